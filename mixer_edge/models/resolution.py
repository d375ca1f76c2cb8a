"""Fine-tuning at a higher resolution, the paper's way (Tolstikhin et al. 2021, Appendix C).

At K times the image side the patch grid holds K^2 times the tokens, and the token-mixing MLP's
weights no longer fit. The patches are split into K^2 groups, each a grid of the pre-trained size,
and every token-mixing MLP becomes block-diagonal: K^2 copies of the pre-trained one, each mixing
one group. At initialisation the model therefore mixes every group exactly as the pre-trained
model mixed its image; fine-tuning then learns across groups.

Group (a, b), for a, b in range(K), holds the patches at rows a, a+K, a+2K, ... and columns b, b+K,
...: each group spans the whole image, as the pre-trained model's input did, at the old spacing.
"""
from __future__ import annotations

import re

import torch

TOKEN_MIXING = re.compile(r"^blocks\.\d+\.mlp_tokens\.(fc1|fc2)\.(weight|bias)$")


def group_order(grid: tuple[int, int], k: int) -> torch.Tensor:
    """(K^2, S) long: order[g, l] = the new token index of local token l (row-major in the old
    (gh, gw) grid) of group g = a * K + b, in the new (K gh, K gw) grid, row-major."""
    gh, gw = grid
    i, j = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")       # (gh, gw)
    rows = [(i * k + a) * (k * gw) + (j * k + b) for a in range(k) for b in range(k)]
    return torch.stack([r.reshape(-1) for r in rows])                                # (K^2, S)


def expand_token_mixing(state: dict, grid: tuple[int, int], k: int) -> dict:
    """A state dict whose token-mixing MLPs (fc1: (D_S, S), fc2: (S, D_S)) are block-diagonal
    for the K-times grid: fc1 (K^2 D_S, K^2 S), fc2 (K^2 S, K^2 D_S). Other tensors unchanged."""
    order = group_order(grid, k)
    g2, s = order.shape
    out = dict(state)
    for name, w in state.items():
        m = TOKEN_MIXING.match(name)
        if not m:
            continue
        layer, kind = m.groups()
        out[name] = _expand(w, layer, kind, order, g2, s)
    return out


def _expand(w: torch.Tensor, layer: str, kind: str, order: torch.Tensor, g2: int, s: int) -> torch.Tensor:
    if layer == "fc1" and kind == "bias":                     # (D,) -> (K^2 D,)
        return w.repeat(g2)
    if layer == "fc1":                                        # (D, S) -> (K^2 D, K^2 S)
        d = w.shape[0]
        new = w.new_zeros(g2 * d, g2 * s)
        for g in range(g2):
            new[g * d:(g + 1) * d, order[g]] = w
        return new
    if kind == "bias":                                        # (S,) -> (K^2 S,)
        new = w.new_zeros(g2 * s)
        for g in range(g2):
            new[order[g]] = w
        return new
    d = w.shape[1]                                            # fc2 (S, D) -> (K^2 S, K^2 D)
    new = w.new_zeros(g2 * s, g2 * d)
    for g in range(g2):
        new[order[g], g * d:(g + 1) * d] = w
    return new


def scale_factor(old_grid: tuple[int, int], new_grid: tuple[int, int]) -> int | None:
    """K when the new grid is K times the old one on both sides (K >= 1), else None."""
    (oh, ow), (nh, nw) = old_grid, new_grid
    if nh % oh or nw % ow or nh // oh != nw // ow:
        return None
    return nh // oh
