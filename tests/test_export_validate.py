"""export/validate.py's decisions on evidence: the Clopper-Pearson interval against scipy's beta
quantiles (an independent computation of the same interval) and published values, the three
outcomes of the agreement and --max-drop checks, and check_artifact on 20 images with one flipped
prediction: undecided, kept; failed only under --strict."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from mixer_edge.export.base import ExportSpec, LoadedRunner
from mixer_edge.export.reference import ValidationData, check_artifact
from mixer_edge.export.validate import decide_drop, decide_rate, rate_interval, undecided


@pytest.mark.parametrize("k, n", [(19, 20), (20, 20), (0, 10), (5, 10), (179, 179), (975, 1000), (1, 3000),
                                  (49_990, 50_000)])
def test_clopper_pearson_matches_scipy_beta_quantiles(k, n):
    lo = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    hi = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    assert rate_interval(k, n) == pytest.approx((lo, hi), abs=1e-6)


def test_published_interval():
    # 19 of 20: [0.7513, 0.9987] (Clopper-Pearson, e.g. Newcombe 1998, table I style)
    assert rate_interval(19, 20) == pytest.approx((0.7513, 0.9987), abs=1e-4)


@pytest.mark.parametrize("k, n, want", [
    (19, 20, "undecided"),     # the case: one flip in 20 cannot show a rate below 0.98
    (20, 20, "undecided"),     # ... nor can none show one above
    (15, 20, "failed"),        # [0.531, 0.913]: wholly below
    (1000, 1000, "passed"),    # [0.9963, 1]: wholly above
    (960, 1000, "failed"),     # [0.947, 0.971]
    (985, 1000, "undecided"),  # [0.975, 0.992] holds 0.98
])
def test_agreement_decisions(k, n, want):
    assert decide_rate(k, n, 0.98)["decision"] == want


def test_drop_decisions():
    assert decide_drop(0, 0, 1000, 0.01)["decision"] == "passed"
    assert decide_drop(1, 0, 20, 0.01)["decision"] == "undecided"
    assert decide_drop(30, 0, 200, 0.01)["decision"] == "failed"      # 15 points lost, surely above 1
    d = decide_drop(0, 0, 20, 0.0)
    assert d["decision"] == "undecided" and d["interval"][0] < 0 < d["interval"][1]   # never overconfident


def _twenty(flip: int):
    """20 images' reference logits and an artifact's: identical but for `flip` rows whose top-1
    moves to another class; labels are the reference's own top-1 for all but the flipped rows."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20, 10)).astype(np.float32)
    out = ref.copy()
    for i in range(flip):
        j = int(np.argsort(ref[i])[-2])
        out[i, j] = ref[i].max() + 0.01
    labels = ref.argmax(1)
    val = ValidationData(x=np.zeros((20, 1, 8, 8), np.float32), labels=labels, source="twenty", reference=ref)
    return val, LoadedRunner(lambda x: out[: len(x)], {}, "the flipped logits")


class _Target:
    name = "toy"


def test_twenty_images_one_flip_is_undecided_not_failed():
    """Issue 20: INT8 validation on 20 images discarded an artifact over one flipped prediction."""
    val, run = _twenty(1)
    figures, problems, _ = check_artifact(_Target(), None, ExportSpec(precision="int8"), val, stand_in=run)
    assert figures["top1_agreement"] == 0.95 and figures["cosine"] > 0.99
    assert problems == [] and figures["passed"] is True and figures["status"] == "undecided"
    assert figures["agreement_decision"]["interval"] == pytest.approx([0.7513, 0.9987], abs=1e-4)
    assert figures["undecided"][0].startswith("undecided: too few images: top-1 agreement 19/20")
    strict, problems, _ = check_artifact(_Target(), None, ExportSpec(precision="int8", strict=True), val, stand_in=run)
    assert strict["status"] == "failed" and strict["passed"] is False and problems == strict["undecided"]


def test_a_clear_failure_still_fails():
    val, run = _twenty(6)   # 14/20: [0.457, 0.881], wholly below 0.98
    figures, problems, _ = check_artifact(_Target(), None, ExportSpec(precision="int8"), val, stand_in=run)
    assert figures["status"] == "failed" and any(p.startswith("top-1 agreement 0.7000 < 0.98") for p in problems)


def test_fp32_has_no_agreement_question():
    val, run = _twenty(0)
    figures, problems, _ = check_artifact(_Target(), None, ExportSpec(precision="fp32"), val, stand_in=run)
    assert figures["status"] == "passed" and undecided("fp32", figures) == [] and problems == []


def test_fp32_logit_tolerance_scales_with_the_logits():
    """A head with large weights: logits near 70, float32 rounding about 1.3e-4 (measured on a B/16
    OpenVINO FP32 IR). 1e-4 x max(1, 70) = 7e-3 passes it; a real error (a logit off by 0.05) fails,
    and small logits keep the 1e-4 absolute limit."""
    from mixer_edge.export.validate import compare, failures

    rng = np.random.default_rng(0)
    ref = np.clip(rng.standard_normal((50, 10)) * 25, -60, 60).astype(np.float32)
    ref[0, 0] = 70.0
    rounding = ref + (rng.standard_normal(ref.shape) * 4e-5).astype(np.float32)
    assert compare(ref, rounding)["max_abs_diff"] > 1e-4 and failures("fp32", compare(ref, rounding)) == []
    wrong = ref.copy()
    wrong[3, 2] += 0.05
    (line,) = failures("fp32", compare(ref, wrong))
    assert line.startswith("max |logit diff| 0.05 > 0.007 (0.0001 x 70")
    small = ref / 100                                    # largest |logit| 0.7: the limit stays 1e-4
    assert failures("fp32", compare(small, small + np.float32(2e-4))) != []
