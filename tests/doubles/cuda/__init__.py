"""A test double of cuda-python (12.x with cuda.bindings.runtime and the older cuda.cudart, or 13.x
with cuda.bindings.runtime only), for the device rehearsal. See tests/doubles/README.md."""
