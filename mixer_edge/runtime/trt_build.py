#!/usr/bin/env python3
"""trt_build.py: build the TensorRT engine of a mixer-edge TensorRT artifact on the device that will
run it (a Jetson with JetPack 6.1 / 6.2, or an NVIDIA GPU with TensorRT 10.x / 11.x), check it against
the artifact's golden set, and with --data benchmark it:

    python3 trt_build.py ARTIFACT_DIR [--max-batch N] [--data SPEC --json result.json]   # --help for all

Every TensorRT artifact carries this launcher beside `mixer_edge_runtime/`, the device runtime
package; what to install on the device is in the README ("On a Jetson").
"""
import sys

if __package__:        # mixer_edge.runtime.trt_build, on a host with mixer-edge installed
    from .engine_cli import main
else:                  # trt_build.py in an artifact folder, the runtime package beside it
    from mixer_edge_runtime.engine_cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
