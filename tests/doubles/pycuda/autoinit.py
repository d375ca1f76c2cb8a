"""pycuda.autoinit: creates a context on device 0 (nothing to do in the double)."""
