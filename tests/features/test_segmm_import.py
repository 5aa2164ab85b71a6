"""SegMM release format (memmap + JSON map) import into our store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segint.cli import main
from segint.features import FeatureStore
from segint.features.segmm import SegMMFeatures

DIM = 5


def make_release(tmp_path: Path, dtype: str, parts: int = 1) -> tuple[list[Path], Path, dict]:
    """A SegMM-style memmap (optionally cut into parts mid-row) and its JSON map.

    Rows are not in key order, one row is unmapped, and videos have gaps in their segments.
    Returns the part paths, the map path and ``{(video, segment): vector}``.
    """
    rng = np.random.default_rng(1)
    keys = [(10, 0), (10, 1), (10, 2), (7, 0), (7, 3), (12345678901, 0)]
    n_rows = len(keys) + 1
    data = rng.standard_normal((n_rows, DIM)).astype(dtype)
    order = rng.permutation(n_rows)[: len(keys)]  # one row stays unmapped
    mapping = {f"{v}-{s}": int(r) for (v, s), r in zip(keys, order, strict=True)}
    raw = data.tobytes()
    cuts = np.linspace(0, len(raw), parts + 1).astype(int)  # not on row boundaries
    paths = []
    for i in range(parts):
        p = tmp_path / f"feat_{dtype}.dat.part{i}"
        p.write_bytes(raw[cuts[i] : cuts[i + 1]])
        paths.append(p)
    map_path = tmp_path / "map.json"
    map_path.write_text(json.dumps(mapping))
    truth = {k: data[r].astype(np.float32) for k, r in zip(keys, order, strict=True)}
    return paths, map_path, truth


@pytest.mark.parametrize(("dtype", "parts"), [("float64", 1), ("float32", 1), ("float64", 3)])
def test_import_round_trip(tmp_path: Path, dtype: str, parts: int) -> None:
    """Every mapped vector lands under its key, converted to float32; gaps stay missing."""
    paths, map_path, truth = make_release(tmp_path, dtype, parts)
    argv = ["features", "import-segmm", "--map", str(map_path), "--dim", str(DIM)]
    argv += ["--dtype", dtype, "--out", str(tmp_path / "st"), "--no-progress"]
    for p in paths:
        argv += ["--memmap", str(p)]
    assert main(argv) == 0
    s = FeatureStore.open(tmp_path / "st")
    assert s.n_rows == len(truth) and len(s) == 3 and s.dim == DIM
    for (vid, seg), x in truth.items():
        feats, mask = s.get(vid, seg + 1)
        assert mask[seg]
        np.testing.assert_allclose(feats[seg], x, rtol=1e-6)
    assert s.get(7, 4)[1].tolist() == [True, False, False, True]
    # Importing again adds nothing (resume after an interruption).
    assert main(argv) == 0
    assert FeatureStore.open(tmp_path / "st").n_rows == len(truth)


def test_import_l1_normalised(tmp_path: Path) -> None:
    """--l1-normalize stores x / (|x|_1 + 1e-6), as the reference feeds the model."""
    paths, map_path, truth = make_release(tmp_path, "float64")
    argv = ["features", "import-segmm", "--memmap", str(paths[0]), "--map", str(map_path)]
    argv += ["--dim", str(DIM), "--out", str(tmp_path / "st"), "--l1-normalize", "--no-progress"]
    assert main(argv) == 0
    s = FeatureStore.open(tmp_path / "st")
    assert s.meta["l1_normalized"] is True
    x = truth[(10, 2)]
    np.testing.assert_allclose(s.get(10, 3)[0][2], x / (np.abs(x).sum() + 1e-6), rtol=1e-5)


def test_reader_random_access(tmp_path: Path) -> None:
    """SegMMFeatures reads rows across part boundaries."""
    paths, _, _ = make_release(tmp_path, "float64", parts=3)
    mm = SegMMFeatures(paths, DIM, "float64")
    whole = np.frombuffer(b"".join(p.read_bytes() for p in paths), np.float64).reshape(-1, DIM)
    assert mm.n_rows == len(whole)
    np.testing.assert_allclose(mm.read_rows(1, 5), whole[1:6].astype(np.float32))


def test_bad_inputs_exit_2(tmp_path: Path, capsys) -> None:
    """Wrong --dim, a row beyond the file, a malformed map: exit 2, one line."""
    paths, map_path, _ = make_release(tmp_path, "float64")
    base = ["features", "import-segmm", "--memmap", str(paths[0]), "--out", str(tmp_path / "st")]
    bad_map = tmp_path / "bad.json"
    bad_map.write_text(json.dumps({"10-0": 0, "oops": 1}))
    far_map = tmp_path / "far.json"
    far_map.write_text(json.dumps({"10-0": 99}))
    cases = [
        (["--map", str(map_path), "--dim", "4"], "not a multiple"),
        (["--map", str(bad_map), "--dim", str(DIM)], "bad entry 'oops'"),
        (["--map", str(far_map), "--dim", str(DIM)], "beyond"),
        (["--map", str(tmp_path / "none.json"), "--dim", str(DIM)], "unreadable"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
