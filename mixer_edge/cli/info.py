"""`mixer-edge models` and `mixer-edge targets`: what is available here."""
from __future__ import annotations

import argparse

from ..export.registry import get_target, target_names
from ..runtime.errors import EXIT_OK
from ..runtime.schema import PRECISIONS


# ---- models ------------------------------------------------------------------------------------

def run_models(args: argparse.Namespace) -> int:
    import torch

    from ..models.mixer import MlpMixer, count_params
    from ..models.variants import VARIANTS, variant_config
    print(f"{'variant':8} {'layers':>6} {'patch':>5} {'C':>5} {'D_S':>5} {'D_C':>5} {'size':>5} {'params@1000':>13}  note")
    for name, v in VARIANTS.items():
        with torch.device("meta"):
            n = count_params(MlpMixer(variant_config(name)))
        print(f"{name:8} {v.num_layers:>6} {v.patch_size:>5} {v.hidden_dim:>5} {v.tokens_mlp_dim:>5} "
              f"{v.channels_mlp_dim:>5} {v.img_size:>5} {n:>13,}  {v.note}")
    return EXIT_OK


# ---- targets -----------------------------------------------------------------------------------

def run_targets(args: argparse.Namespace) -> int:
    # "exports here": the packages export and validation need on this machine are installed;
    # "runs here": the artifact's own runtime executes here (TensorRT needs a GPU, Core ML macOS).
    print(f"{'target':10} {'precisions':16} {'exports here':13} {'runs here':9}  runtime / note")
    for name in target_names():
        t = get_target(name)
        st = t.status()
        precisions = ",".join(p for p in PRECISIONS if p in t.capabilities.precisions)
        note = t.capabilities.runtime + (f"; {st.reason}" if st.reason else "")
        print(f"{name:10} {precisions:16} {'yes' if st.installed else 'no':13} {'yes' if st.runs_here else 'no':9}  {note}")
    return EXIT_OK
