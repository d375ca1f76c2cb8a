"""Benchmarks on the host: latency, throughput, memory, accuracy and agreement of artifacts and
PyTorch baselines (harness.py, measuring with the device runtime's own modules: runtime/timing,
accuracy, system, results), and the report that merges results from many devices (report.py)."""
