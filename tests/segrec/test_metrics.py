"""CTR metrics against hand computations, and the seeds -> table statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from segrec.metrics import auc, ctr_metrics, f1, log_loss, mean_std, welch_p
from segrec.report import bucket_table, format_table, significance, summarize, versus_video


def test_auc_by_hand_with_ties() -> None:
    """Positives 0.9, 0.4 vs negatives 0.1, 0.4: pairs 1 + 1 + 1 + 1/2 (tie) = 3.5 of 4."""
    assert auc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.4]) == pytest.approx(0.875)
    assert auc([1, 1, 0], [0.2, 0.3, 0.9]) == 0.0
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_auc_matches_pair_counting() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.4
    s = np.round(rng.random(300), 1)  # many ties
    pos, neg = s[y][:, None], s[~y][None, :]
    want = ((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size)
    assert auc(y, s) == pytest.approx(want)


def test_f1_and_log_loss_by_hand() -> None:
    """Predictions >= 0.5 are positive: tp 2, fp 1, fn 1 -> F1 = 4 / 6."""
    y = [1, 1, 1, 0, 0]
    p = [0.9, 0.5, 0.2, 0.7, 0.1]
    assert f1(y, p) == pytest.approx(2 / 3)
    assert f1([0, 0], [0.1, 0.2]) == 0.0
    want = -np.mean([math.log(0.9), math.log(0.5), math.log(0.2), math.log(0.3), math.log(0.9)])
    assert log_loss(y, p) == pytest.approx(want)
    # clipping to [1e-7, 1 - 1e-7]: a confident mistake costs -log(1e-7), not infinity
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))
    assert set(ctr_metrics(y, p)) == {"AUC", "F1", "LogLoss"}


def test_welch_p_by_hand() -> None:
    """Welch's t and Welch-Satterthwaite degrees of freedom, two-sided."""
    a, b = [0.71, 0.72, 0.74, 0.73, 0.70], [0.69, 0.70, 0.70, 0.68, 0.71]
    va, vb = np.var(a, ddof=1) / 5, np.var(b, ddof=1) / 5
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)
    assert welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert math.isnan(welch_p([0.7], b))
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))


def _runs() -> list[dict[str, object]]:
    rng = np.random.default_rng(1)
    base = {"video": 0.70, "segsum": 0.69, "segadjust": 0.695, "segrec": 0.72}
    out: list[dict[str, object]] = []
    for mode, level in base.items():
        for seed in range(5):
            noise = rng.normal(0, 0.003)
            out.append(
                {
                    "model": f"{mode}{seed}",
                    "backbone": "widedeep",
                    "mode": mode,
                    "seed": seed,
                    "metrics": {
                        "AUC": level + noise,
                        "F1": 0.6 - noise,
                        "LogLoss": 1.3 - level + noise / 2,
                    },
                    "by_bucket": {"0-30s": {"rows": 10, "positive_rate": 0.5, "AUC": level}},
                }
            )
    return out


def test_significance_picks_best_baseline_per_metric() -> None:
    """AUC/F1: highest mean baseline; LogLoss: lowest; p from the per-seed values."""
    runs = _runs()
    summary = summarize(runs)
    tests = significance(summary)["widedeep"]
    assert tests["AUC"]["baseline"] == "video"
    assert tests["LogLoss"]["baseline"] == "video"  # 1.3 - 0.70 is the lowest baseline
    seg = [r["metrics"]["AUC"] for r in runs if r["mode"] == "segrec"]  # type: ignore[index]
    vid = [r["metrics"]["AUC"] for r in runs if r["mode"] == "video"]  # type: ignore[index]
    assert tests["AUC"]["p"] == pytest.approx(welch_p(seg, vid))
    assert tests["AUC"]["delta"] == pytest.approx(np.mean(seg) - np.mean(vid))
    text = format_table(summary, significance(summary))
    # header, rule, 3 methods, SegRec vs best baseline, then each interest method vs Video
    assert "SegRec (ID)" in text and "p=" in text and text.count("\n") == 2 + 5
    vs = versus_video(summary)["widedeep"]
    assert set(vs) == {"segrec"} and vs["segrec"]["AUC"]["p"] == pytest.approx(welch_p(seg, vid))
    assert f"| WideDeep | SegRec (ID) vs Video (Welch) | | p={vs['segrec']['AUC']['p']:.3g}" in text
    assert "0.7200" in bucket_table(runs)


def test_paired_bootstrap_difference_and_error() -> None:
    """Identical predictions: difference 0 and standard error 0; a better model has a
    positive AUC difference well outside its standard error, and the error shrinks with rows."""
    from segrec.metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    y = rng.random(4000) < 0.5
    noise = rng.normal(size=4000)
    good, bad = y + noise, y + 3 * noise
    same = paired_bootstrap(y, good, good, n_boot=50)
    assert same["AUC"] == (0.0, 0.0) and same["LogLoss"] == (0.0, 0.0)
    p_good, p_bad = 1 / (1 + np.exp(-good)), 1 / (1 + np.exp(-bad))
    d, se = paired_bootstrap(y, p_good, p_bad, n_boot=200)["AUC"]
    assert d == pytest.approx(auc(y, p_good) - auc(y, p_bad)) and d > 5 * se > 0
    _, se_small = paired_bootstrap(y[:400], p_good[:400], p_bad[:400], n_boot=200)["AUC"]
    assert se_small > 2 * se


def test_platt_recovers_a_known_scaling() -> None:
    """Labels drawn from sigmoid(2 z - 0.5) with z = logit(p): the fit finds (2, -0.5)."""
    from segrec.train import fit_platt

    rng = np.random.default_rng(0)
    z = rng.normal(size=200_000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(2 * z - 0.5)))).astype(np.float64)
    a, b = fit_platt(y, 1 / (1 + np.exp(-z)))
    assert a == pytest.approx(2.0, abs=0.03)
    assert b == pytest.approx(-0.5, abs=0.03)
    assert fit_platt(np.ones(5), np.full(5, 0.3)) == (1.0, 0.0)  # one class: identity


def test_calibration_shifts_the_logit_only() -> None:
    """SegRecModel applies a * logit + b after the backbone; (1, 0) leaves it untouched."""
    from dataclasses import replace

    import torch

    from segrec.network import SegRecModel
    from tests.segrec.test_network import batch, model

    m = model("widedeep", "video")
    x = batch()
    raw = m(**x)
    scaled = SegRecModel(replace(m.cfg, calibration=(0.5, 0.25)))
    scaled.load_state_dict(m.state_dict())
    scaled.eval()
    assert torch.allclose(scaled(**x), 0.5 * raw + 0.25, atol=1e-6)
