"""learned.summary: mean ± std over seeds, point-estimate methods without ranking cells."""

from __future__ import annotations

import json

from learned.summary import main


def _report(ndcg: float, mae: float) -> dict:
    block = {
        "A": {"HR@1": 0.1, "HR@5": 0.5, "NDCG@5": ndcg, "NDCG@10": 0.4, "MAE": mae,
              "MAE_mean": mae, "XAUC": 0.7},
        "d2q": {"MAE": mae, "MAE_mean": mae, "XAUC": 0.6},
    }  # fmt: skip
    return {
        **dict.fromkeys(("paper", "strict", "paper_cold", "strict_cold"), block),
        "rows": {"train": 10, "test": 5, "test_cold": 1},
        "settings": {"d2q": {"fit_and_predict_seconds": 2.0, "encoding": "kfold"}},
    }


def test_mean_std_over_seeds(tmp_path, capsys):
    """Two seeds with NDCG@5 0.2 and 0.4 -> 0.3000 ± 0.1000; d2q's HR cells are '-'."""
    for seed, ndcg in ((0, 0.2), (1, 0.4)):
        (tmp_path / f"temporal-s{seed}").mkdir()
        (tmp_path / f"temporal-s{seed}" / "learned-gbdt.json").write_text(
            json.dumps(_report(ndcg, 4.0))
        )
    assert main([str(tmp_path), "temporal"]) == 0
    out = capsys.readouterr().out
    assert "| A | 0.1000 ± 0.0000 | 0.5000 ± 0.0000 | 0.3000 ± 0.1000 |" in out
    assert "| d2q | - | - | - | - | 4.0000 ± 0.0000 |" in out
    assert "| d2q | 2.0000 ± 0.0000 | 1.0000 ± 0.0000 | kfold, kfold |" in out
    assert main([str(tmp_path), "random_per_user"]) == 2


def test_compare_table(tmp_path, capsys):
    """A compare file becomes one row: diff ± SE (verdict), '-' where the metric is NaN."""
    rows = [
        {"metric": "NDCG@5", "protocol": "strict", "diff": 0.01, "se": 0.002, "verdict": "win"},
        {"metric": "HR@1", "protocol": "strict", "diff": float("nan"), "se": float("nan"),
         "verdict": "-"},
        {"metric": "NDCG@5", "protocol": "paper", "diff": 9.0, "se": 1.0, "verdict": "win"},
    ]  # fmt: skip
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"A": "a", "B": "b", "rows": 1200, "cold_only": True, "comparisons": rows})
    )
    assert main(["--compare", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| a - b (cold) | 1,200 | - | +0.0100 ± 0.0020 (win) | - |" in out


def test_add_method_refuses_other_rows(tmp_path):
    """--add recomputes a method from a predictions file; other test rows are refused."""
    import pytest

    from learned.summary import add_method
    from segint.predictions import write_predictions
    from tests.learned.test_merge import _frames

    a, _ = _frames()
    (tmp_path / "temporal-s0").mkdir()
    write_predictions(a, tmp_path / "temporal-s0" / "segint.parquet")
    report = _report(0.2, 4.0)
    report["rows"]["test"] = a.height
    reports = {0: report}
    add_method(reports, tmp_path, "temporal", "segint:Y")
    assert set(reports[0]["strict"]["Y"]) >= {"NDCG@5", "MAE", "XAUC"}
    report["rows"]["test"] = a.height + 1
    with pytest.raises(ValueError, match="other test rows"):
        add_method(reports, tmp_path, "temporal", "segint:Y")
