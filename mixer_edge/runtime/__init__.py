"""The device runtime: what runs an artifact where mixer-edge is not installed. Standard library,
numpy, the artifact's runtime (onnxruntime, openvino, tensorrt, coremltools) and Pillow only.

Every artifact ships this package, byte-identical, as `mixer_edge_runtime/` beside the launchers
`edge_bench.py` (and `trt_build.py` for TensorRT); the host imports these modules directly, so the
code that validated an artifact is the code that runs it. Modules, leaves first:

    errors      the error vocabulary, the exit codes, the one error boundary
    needs       what a device needs installed, and the message when it is missing
    preprocess  raw images -> model input, as the manifest says
    schema      the document shapes of manifest.json and result JSON
    artifact    manifest reading, confined paths, sha256, atomic writes
    backends/   one module per runtime (onnxruntime, openvino, coreml, tensorrt + cuda), a registry
    images, unpickle, streaming, readers    data: image files, restricted unpickling, large folders,
                data sets (digits, mnist, cifar10, image folders, .npz)
    identity    content keys, fingerprints, seeded splits, the held-out selection
    labels      the data's classes matched to the model's
    batching    a backend run over many images
    golden      the golden self-check of an artifact on this device
    predict     Predictor: an artifact answering "what is in this image?"
    timing, accuracy, system    measurements: time, top-k and agreement, memory / CPU / versions
    results     the result document and its table
    bench       one artifact benchmarked end to end
    engine      the TensorRT engine build
    cli, engine_cli   the command lines of edge_bench.py and trt_build.py (the launchers beside this package)
"""
