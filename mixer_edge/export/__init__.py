"""Export: checkpoint -> validated artifact per target and precision.

    artifact = mixer_edge.export("runs/mnist", target="openvino", precision="int8",
                                 calib="mnist:data/mnist", out_dir="artifacts")

plan.py holds export(), the plan and the data it prepares; build.py one artifact; base.py the
Target interface; registry.py the targets by name; one module per target. Names resolve on first
use, so listing targets (`mixer-edge targets`, `--help`) imports no torch and no backend SDK.
"""
_API = {"export": "plan", "ExportPlan": "plan", "run_plan": "plan", "ExportSpec": "base"}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)


__all__ = list(_API)
