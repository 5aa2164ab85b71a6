"""`python -m learned.summary`: mean ± std over seed reports; bad input exits 2."""

from __future__ import annotations

import json

from learned.summary import BLOCKS, METRICS, main


def report(x: float) -> dict:
    block = {"m": dict.fromkeys(METRICS, x)}
    return {
        **dict.fromkeys(BLOCKS, block),
        "rows": {"train": 9, "test": 3, "test_cold": 1},
        "settings": {"m": {"train_seconds": 10 * x}},
    }


def test_mean_and_std_over_reports(tmp_path, capsys):
    """Two reports with 1 and 3 give 2.0000 ± 1.4142 (sample std) and 20 ± 14 seconds."""
    paths = []
    for i, x in enumerate((1.0, 3.0)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(report(x)))
    png = tmp_path / "bars.png"
    assert main(["--reports", *map(str, paths), "--methods", "m", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| m | 2.0000 ± 1.4142 |" in out and out.rstrip().count("| 20 ± 14 |") == len(BLOCKS)
    assert png.stat().st_size > 0


def test_unknown_method_exits_2(tmp_path, capsys):
    """A method missing from a report is one error line and exit code 2."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report(1.0)))
    assert main(["--reports", str(path), "--methods", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "error: --methods not in every report: nope"
