#!/usr/bin/env python3
"""edge_bench.py: check, run and benchmark a mixer-edge artifact on the device that runs it.

Every artifact carries this launcher beside `mixer_edge_runtime/`, the device runtime package
(standard library, numpy, the artifact's runtime and Pillow; never torch or mixer-edge):

    python3 edge_bench.py ARTIFACT_DIR --data SPEC [--json result.json]     # benchmark (--help for all)
    python3 edge_bench.py ARTIFACT_DIR --predict IMAGE_OR_FOLDER...          # classify images

For applications, with the artifact folder on sys.path:

    import edge_bench
    model = edge_bench.load("artifacts/onnx-int8")      # checks every file's sha256 and the golden set
    model.predict(["photo.png"], top_k=3)               # -> [[{"class": "7", "index": 7, "score": 0.93}, ...]]

On a host with mixer-edge installed the same names are `mixer_edge.runtime.edge_bench`.
"""
import sys

if __package__:        # mixer_edge.runtime.edge_bench, on a host with mixer-edge installed
    from .backends import Options
    from .cli import main
    from .predict import Predictor, load
else:                  # edge_bench.py in an artifact folder, the runtime package beside it
    from mixer_edge_runtime.backends import Options
    from mixer_edge_runtime.cli import main
    from mixer_edge_runtime.predict import Predictor, load

__all__ = ["Options", "Predictor", "load", "main"]

if __name__ == "__main__":
    sys.exit(main())
