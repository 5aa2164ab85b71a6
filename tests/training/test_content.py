"""The content modality through training and evaluation (issue 3 item 5).

Unit tests check the content tensors of a batch against the store; CLI tests check the
one-line errors; the slow test trains ID-only, Content-only and Both on a synthetic log whose
exits depend on content (`segint.features.synthetic`) and shows that content is learnt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from segint.cli import main
from segint.data import load_table
from segint.errors import SegintError
from segint.features import FeatureStore
from segint.features.synthetic import LOG_FILE, generate
from segint.features.writer import FeatureWriter
from segint.splits import TRAIN, assign_split, history_index
from tests.paths import ROOT
from tests.training.conftest import TINY
from training.data import InteractionDataset, build_vocabs, open_content_store

SYNTH_CONFIG = ROOT / "configs" / "synthetic.yaml"
CONTENT = ["model.modalities=[id,content]", "model.content_dim=8"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small synthetic log (canonical Parquet) and its 8-wide feature store."""
    out = tmp_path_factory.mktemp("synth-small")
    _, store = generate(n_users=20, n_videos=60, n_views=800, dim=8, seed=1, out_dir=out)
    return out / LOG_FILE, store


def _dataset(log: Path, store: Path | None) -> InteractionDataset:
    table = load_table(log, "canonical")
    split = assign_split(table, "random_per_user", 0)
    rows = np.flatnonzero(split == TRAIN)
    users, videos = build_vocabs(table, rows)
    content = FeatureStore.open(store) if store is not None else None
    return InteractionDataset(table, history_index(table, 6), rows, users, videos, 13, content)


def test_batch_content_matches_the_store(small: tuple[Path, Path]) -> None:
    """video_content (B, S, Dc) = the target's stored segments; hist_content (B, H, Dc) = the
    mean of each history view's watched segments 0..min(exit, N-1); zeros on padding."""
    log, store_path = small
    data = _dataset(log, store_path)
    store = FeatureStore.open(store_path)
    table = load_table(log, "canonical")
    vids, exits = table["video_id"].to_numpy(), table["exit_slot"].to_numpy()
    batch = data.collate([data[i] for i in range(0, 40, 3)])
    b, h = batch.hist_mask.shape
    assert batch.video_content is not None and batch.hist_content is not None
    assert batch.video_content.shape == (b, 13, 8) and batch.hist_content.shape == (b, h, 8)
    assert batch.video_content.dtype == torch.float32
    assert not batch.hist_mask.all() and batch.hist_mask.any()  # padding and real entries
    for i, k in enumerate(range(0, 40, 3)):
        r = data.rows[k]
        n = int(data.n_segments[r])
        want, _ = store.get(int(vids[r]), n)
        np.testing.assert_array_equal(batch.video_content[i, :n].numpy(), want)
        assert not batch.video_content[i, n:].any()
        real = data.history[r][data.history[r] >= 0]
        for j, hr in enumerate(real):
            watched = min(int(exits[hr]), int(data.n_segments[hr]) - 1) + 1
            feats, _ = store.get(int(vids[hr]), watched)
            np.testing.assert_allclose(
                batch.hist_content[i, j].numpy(), feats.mean(axis=0), rtol=1e-5
            )
        assert not batch.hist_content[i, len(real) :].any()
    assert set(batch.inputs()) >= {"hist_content", "video_content"}


def test_id_only_batches_carry_no_content(small: tuple[Path, Path]) -> None:
    """Without a store the batch is the ID-only batch: no content tensors, no extra inputs."""
    data = _dataset(small[0], None)
    batch = data.collate([data[i] for i in range(8)])
    assert batch.video_content is None and batch.hist_content is None
    assert "hist_content" not in batch.inputs() and "video_content" not in batch.inputs()
    assert batch.to("cpu").video_content is None


def test_open_content_store_checks(small: tuple[Path, Path], tmp_path: Path) -> None:
    from model.config import ModelConfig

    content = ModelConfig(n_users=3, n_videos=3, modalities=("id", "content"), content_dim=8)
    assert open_content_store(small[1], ModelConfig(n_users=3, n_videos=3)) is None
    assert open_content_store(small[1], content).dim == 8
    with pytest.raises(SegintError, match="--features"):
        open_content_store("", content)
    with pytest.raises(SegintError, match="not a segment feature store"):
        open_content_store(tmp_path, content)
    with pytest.raises(SegintError, match="width 8.*content_dim is 4"):
        open_content_store(
            small[1], ModelConfig(n_users=3, n_videos=3, modalities=("content",), content_dim=4)
        )


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and match in err, err


def test_cli_content_errors(
    small: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing store, a directory that is no store, a store of another width, a log the
    store does not cover: exit 2 with one line, for train and evaluate."""
    log, store = small
    src = ["--data", str(log), "--format", "canonical"]
    train = ["train", *src, "--config", str(TINY), "--s-max", "13", "--no-progress"]
    _one_line_error(capsys, [*train, "--out", str(tmp_path / "a"), "--set", *CONTENT], "--features")
    _one_line_error(
        capsys,
        [*train, "--out", str(tmp_path / "b"), "--features", str(tmp_path), "--set", *CONTENT],
        "not a segment feature store",
    )
    wide = ["model.modalities=[content]", "model.content_dim=5"]
    _one_line_error(
        capsys,
        [*train, "--out", str(tmp_path / "c"), "--features", str(store), "--set", *wide],
        "content_dim is 5",
    )
    other = tmp_path / "other"
    with FeatureWriter(other, 8, encoder="test", feature="test") as w:
        w.add_rows([10**9], [0], np.ones((1, 8), np.float32))
    _one_line_error(
        capsys,
        [*train, "--out", str(tmp_path / "d"), "--features", str(other), "--set", *CONTENT],
        "holds none of these rows' videos",
    )

    # A trained content run: evaluate defaults to its store, and fails cleanly without it.
    run = tmp_path / "run"
    assert main([*train, "--out", str(run), "--features", str(store), "--set", *CONTENT]) == 0
    recorded = yaml.safe_load((run / "config.yaml").read_text())["features"]
    assert recorded == {
        "store": str(store.resolve()),
        "l1_normalize": False,
        "video_table": "",  # side tables off (the default)
        "user_table": "",
    }
    capsys.readouterr()
    evaluate = ["evaluate", "--model", str(run), *src, "--s-max", "13"]
    assert main(evaluate) == 0
    assert "SegInterest" in capsys.readouterr().out
    narrow = tmp_path / "narrow"
    with FeatureWriter(narrow, 4, encoder="test", feature="test") as w:
        w.add_rows([1], [0], np.ones((1, 4), np.float32))
    _one_line_error(capsys, [*evaluate, "--features", str(narrow)], "has width 4")
    _one_line_error(capsys, [*evaluate, "--features", str(tmp_path / "gone")], "gone")


def _test_ndcg5(report: Path) -> tuple[float, float]:
    r = json.loads(report.read_text())
    return r["strict"]["SegInterest"]["NDCG@5"], r["paper"]["SegInterest"]["NDCG@5"]


@pytest.mark.slow
def test_content_and_both_beat_id_only_on_content_driven_exits(tmp_path: Path) -> None:
    """On a log whose exits depend on how each segment's content matches the user's taste,
    Content-only and Both beat ID-only on test NDCG@5 (same split, seeds and config).

    Sizes and seeds are fixed; on these data the gap is about 0.1 NDCG@5 (measured: ID 0.66,
    Content 0.77, Both 0.77), so the 0.03 margin asserted is far from noise.
    """
    _, store = generate(
        n_users=100, n_videos=600, n_views=10_000, dim=16, seed=0, out_dir=tmp_path,
        n_topics=4, content_weight=3.0,
    )  # fmt: skip
    src = ["--data", str(tmp_path / LOG_FILE), "--format", "canonical"]
    small_model = [
        "data.history_len=20", "model.d_model=16", "model.n_heads=2", "model.ffn_dim=32",
        "optim.batch_size=128", "optim.max_epochs=8", "optim.eval_every=40", "optim.lr=5e-3",
        "optim.patience=20",
    ]  # fmt: skip
    runs = {"id": ("[id]", 0), "content": ("[content]", 16), "both": ("[id,content]", 16)}
    scores = {}
    for name, (modalities, dim) in runs.items():
        run, report = tmp_path / name, tmp_path / f"{name}.json"
        features = ["--features", str(store)] if dim else []
        sets = [*small_model, f"model.modalities={modalities}", f"model.content_dim={dim}"]
        train = ["train", *src, "--config", str(SYNTH_CONFIG), "--out", str(run), "--no-progress"]
        assert main([*train, *features, "--set", *sets]) == 0
        # evaluate finds the store through the run's config.yaml.
        evaluate = ["evaluate", "--model", str(run), *src, "--s-max", "13"]
        assert main([*evaluate, "--json", str(report)]) == 0
        scores[name] = _test_ndcg5(report)
    for protocol in (0, 1):
        assert scores["content"][protocol] > scores["id"][protocol] + 0.03, scores
        assert scores["both"][protocol] > scores["id"][protocol] + 0.03, scores
