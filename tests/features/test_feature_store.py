"""The segment feature store: lookups, model-input helpers, appends and crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import segint.features.writer as writer_mod
from segint.errors import DataError, SegintError
from segint.features import FeatureStore, FeatureWriter, l1_normalize

D = 6


def vec(video_id: int, segment: int) -> np.ndarray:
    """A deterministic vector per key, so every read can be checked against its key."""
    return np.arange(D, dtype=np.float32) + 100 * video_id + segment / 10


def rows(video_id: int, n: int) -> np.ndarray:
    return np.stack([vec(video_id, j) for j in range(n)])


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Videos 1 (3 segments), 2 (1), 5 (segments 0 and 2 only, 1 missing)."""
    with FeatureWriter(tmp_path / "st", D, encoder="test", feature="unit") as w:
        w.add(1, rows(1, 3))
        w.add(2, rows(2, 1))
        w.add_rows([5, 5], [2, 0], [vec(5, 2), vec(5, 0)])
    return tmp_path / "st"


def test_lookups(store_path: Path) -> None:
    """has/segments/get/contains agree with what was written; missing reads as zeros + mask."""
    s = FeatureStore.open(store_path)
    assert (s.dim, len(s), s.n_rows) == (D, 3, 6)
    assert s.video_ids.tolist() == [1, 2, 5]
    assert s.has(1) and s.has(5) and not s.has(3) and not s.has(10**12)
    assert s.segments(5).tolist() == [0, 2] and s.segments(4).size == 0
    feats, mask = s.get(5, 4)
    assert feats.shape == (4, D) and mask.tolist() == [True, False, True, False]
    np.testing.assert_array_equal(feats[[0, 2]], [vec(5, 0), vec(5, 2)])
    assert not feats[[1, 3]].any()
    got = s.contains([1, 1, 5, 5, 9], [2, 3, 1, 2, 0])
    assert got.tolist() == [True, False, False, True, False]


def test_video_matrix(store_path: Path) -> None:
    """(C, S, D) slots beyond n_segments or s_max stay empty; unknown videos are all-empty."""
    s = FeatureStore.open(store_path)
    feats, mask = s.video_matrix([2, 1, 7, 1], [1, 2, 3, 9], s_max=3)
    assert feats.shape == (4, 3, D) and feats.dtype == np.float32 and mask.shape == (4, 3)
    assert mask.tolist() == [
        [True, False, False], [True, True, False], [False, False, False], [True, True, True],
    ]  # fmt: skip
    np.testing.assert_array_equal(feats[3], rows(1, 3))
    np.testing.assert_array_equal(feats[1, :2], rows(1, 2))
    assert not feats[~mask].any()


def test_history_means(store_path: Path) -> None:
    """Mean of segments 0..min(exit, N-1) present in the store; masked entries are zero."""
    s = FeatureStore.open(store_path)
    vids = np.array([[1, 1, 5], [2, 9, 1]])
    exits = np.array([[0, 3, 2], [1, 0, 1]])  # (1, 3) complete view; (2, 9) unknown video
    n = np.array([[3, 3, 3], [1, 2, 3]])
    mask = np.array([[True, True, True], [True, True, False]])
    means, found = s.history_means(vids, exits, n, mask)
    assert means.shape == (2, 3, D)
    assert found.tolist() == [[True, True, True], [True, False, False]]
    np.testing.assert_allclose(means[0, 0], vec(1, 0))
    np.testing.assert_allclose(means[0, 1], rows(1, 3).mean(0))
    np.testing.assert_allclose(means[0, 2], (vec(5, 0) + vec(5, 2)) / 2)  # segment 1 missing
    np.testing.assert_allclose(means[1, 0], vec(2, 0))
    assert not means[1, 1:].any()


def test_l1_normalisation(store_path: Path) -> None:
    """l1_normalize=True returns x / (|x|_1 + 1e-6) rows; zero padding stays zero."""
    s = FeatureStore.open(store_path, l1_normalize=True)
    feats, mask = s.get(5, 3)
    np.testing.assert_allclose(feats[0], vec(5, 0) / (np.abs(vec(5, 0)).sum() + 1e-6), rtol=1e-6)
    assert not feats[1].any()
    assert np.allclose(l1_normalize(np.zeros((2, 3))), 0)


def test_append_and_refuse_duplicates(store_path: Path) -> None:
    """New writers append; a video or key already stored is refused and nothing is committed."""
    with FeatureWriter(store_path, D) as w:
        assert w.has_video(1) and not w.has_video(3)
        with pytest.raises(DataError, match="already"):
            w.add(1, rows(1, 1))
        w.add(3, rows(3, 2))
    assert FeatureStore.open(store_path).n_rows == 8
    with pytest.raises(DataError, match="duplicate key video 5 segment 2"):
        with FeatureWriter(store_path, D) as w:
            w.add(4, rows(4, 1))
            w.add_rows([5], [2], [vec(5, 2)])
    s = FeatureStore.open(store_path)
    assert s.n_rows == 8 and not s.has(4)
    assert (store_path / "features.f32").stat().st_size == 8 * D * 4


def test_writer_checks(store_path: Path, tmp_path: Path) -> None:
    """Wrong dim/encoder, a second writer, bad shapes and NaNs are clear errors."""
    with pytest.raises(SegintError, match="dim"):
        FeatureWriter(store_path, D + 1)
    with pytest.raises(SegintError, match="encoder"):
        FeatureWriter(store_path, D, encoder="other")
    with FeatureWriter(store_path, D) as w:
        with pytest.raises(SegintError, match="another writer"):
            FeatureWriter(store_path, D)
        with pytest.raises(DataError, match="features must be"):
            w.add(7, np.zeros((2, D + 1)))
        with pytest.raises(DataError, match="non-finite"):
            w.add(7, np.full((1, D), np.nan))
    with pytest.raises(DataError, match="not a segment feature store"):
        FeatureStore.open(tmp_path)


def test_crash_before_commit_point(store_path: Path, monkeypatch) -> None:
    """A writer dying after writing rows and index but before replacing meta.json loses only
    its own rows; readers and the next writer see the last commit."""
    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith("meta.json"):
            raise OSError("simulated power cut")
        real_replace(src, dst)

    w = FeatureWriter(store_path, D)
    w.add(8, rows(8, 4))
    monkeypatch.setattr(writer_mod.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        w.commit()
    monkeypatch.undo()
    w._release()  # the process "died": no further commit
    leftovers = sorted(p.name for p in store_path.iterdir())
    assert "meta.json.tmp" in leftovers and len([p for p in leftovers if "index" in p]) == 2
    s = FeatureStore.open(store_path)
    assert s.n_rows == 6 and not s.has(8)
    with FeatureWriter(store_path, D) as w2:  # recovery: torn tail and orphans are dropped
        w2.add(9, rows(9, 1))
    s = FeatureStore.open(store_path)
    assert s.n_rows == 7 and not s.has(8)
    np.testing.assert_array_equal(s.get(9, 1)[0], rows(9, 1))
    assert sorted(p.name for p in store_path.iterdir() if "index" in p.name) == [s.meta["index"]]


def test_torn_tail_is_invisible(store_path: Path) -> None:
    """Uncommitted bytes after the committed rows are ignored by readers, dropped by writers."""
    with open(store_path / "features.f32", "ab") as fh:
        fh.write(b"\x7f" * (D * 4 + 3))
    s = FeatureStore.open(store_path)
    np.testing.assert_array_equal(s.get(1, 3)[0], rows(1, 3))
    FeatureWriter(store_path, D).close()
    assert (store_path / "features.f32").stat().st_size == 6 * D * 4


_KILL_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from segint.features import FeatureWriter
    from tests.features.test_feature_store import rows
    w = FeatureWriter(sys.argv[1], 6, commit_every_s=0.0)
    vid = 100
    while True:
        w.add(vid, rows(vid, 1 + vid % 4))
        w.maybe_commit()
        if vid == 110:
            print("committed", flush=True)
        vid += 1
    """
)


def test_killed_writer_leaves_a_consistent_store(store_path: Path) -> None:
    """SIGKILL at an arbitrary point of a busy writer: every committed video reads back intact."""
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD, str(store_path)],
        cwd=root, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "committed"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    s = FeatureStore.open(store_path)
    assert s.has(110) and len(s) > 11
    for vid in s.video_ids[s.video_ids >= 100]:
        n = 1 + int(vid) % 4
        feats, mask = s.get(int(vid), n)
        assert mask.all(), vid
        np.testing.assert_array_equal(feats, rows(int(vid), n))
    with FeatureWriter(store_path, D) as w:  # and the next writer carries on
        w.add(1_000_000, rows(1, 1))
    assert FeatureStore.open(store_path).has(1_000_000)


def test_reader_does_not_import_torch() -> None:
    """The service reads stores: importing segint.features must not pull torch in."""
    code = "import sys, segint.features; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
