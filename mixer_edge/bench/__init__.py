"""Benchmarks: latency, throughput, memory, accuracy and agreement of artifacts and PyTorch
baselines (harness.py, measuring with mixer_edge/runtime/edge_bench.py's functions), and the
report that merges results from many devices (report.py). cli_commands.py holds the two commands."""
