"""Scripts that run on the device without mixer_edge or torch: edge_bench.py (stdlib + numpy + the
artifact's runtime). They are modules too, so mixer-edge reuses their functions in-process."""
