"""`segint plot heatmap`: the PNG is written and readable; bad input exits 2 with one line."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from segint.cli import main
from segint.commands.plot import select_views
from segint.data import load_table
from segint.errors import SegintError
from segint.features.synthetic import LOG_FILE, generate
from segint.plots import segment_heatmap
from tests.training.conftest import TINY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header; asserts the file is a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.fixture(scope="module")
def content_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Both (id + content) run on a small synthetic log, and the log."""
    out = tmp_path_factory.mktemp("plot")
    _, store = generate(n_users=15, n_videos=40, n_views=500, dim=8, seed=2, out_dir=out)
    run = out / "run"
    argv = [
        "train", "--data", str(out / LOG_FILE), "--format", "canonical", "--config", str(TINY),
        "--s-max", "13", "--features", str(store), "--out", str(run), "--no-progress",
        "--set", "model.modalities=[id,content]", "model.content_dim=8",
    ]  # fmt: skip
    assert main(argv) == 0
    return run, out / LOG_FILE


def _a_view(log: Path) -> tuple[int, int, int]:
    """(user, video, time_ms) of a view in the log (of a video with several views)."""
    table = load_table(log, "canonical")
    counts = table.group_by("video_id").len().sort(["len", "video_id"], descending=True)
    video = int(counts["video_id"][0])
    row = table.filter(table["video_id"] == video).row(0, named=True)
    return int(row["user_id"]), video, int(row["time_ms"])


def test_heatmap_png_for_one_and_several_users(
    content_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """One user's view(s), a single view by --time, and every viewer of the video: each writes a
    real PNG of a plausible size, whose height grows with the number of rows."""
    run, log = content_run
    user, video, time_ms = _a_view(log)
    table = load_table(log, "canonical")
    viewers = sorted(set(table.filter(table["video_id"] == video)["user_id"].to_list()))
    assert len(viewers) >= 3
    base = ["plot", "heatmap", "--model", str(run), "--data", str(log), "--format", "canonical"]
    one, single, many = tmp_path / "one.png", tmp_path / "sub" / "single.png", tmp_path / "many.png"
    assert main([*base, "--user", str(user), "--video", str(video), "--out", str(one)]) == 0
    argv = [*base, "--user", str(user), "--video", str(video), "--time", str(time_ms)]
    assert main([*argv, "--score", "exit", "--out", str(single)]) == 0
    users = [str(u) for u in viewers]
    assert main([*base, "--user", *users, "--video", str(video), "--out", str(many)]) == 0
    sizes = {p: _png_size(p) for p in (one, single, many)}
    for path, (w, h) in sizes.items():
        assert w >= 400 and h >= 150 and path.stat().st_size > 10_000, (path, w, h)
    assert sizes[many][1] > sizes[single][1]


def test_heatmap_bad_input_exits_2(
    content_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, log = content_run
    user, video, _ = _a_view(log)
    table = load_table(log, "canonical")
    users, videos = table["user_id"].to_numpy(), table["video_id"].to_numpy()
    other_user = int(users[~np.isin(users, users[videos == video])][0])
    base = ["plot", "heatmap", "--model", str(run), "--data", str(log), "--format", "canonical"]
    out = ["--out", str(tmp_path / "x.png")]
    cases = {
        "user 999999 is not in the log": ["--user", "999999", "--video", str(video)],
        "video 999999 is not in the log": ["--user", str(user), "--video", "999999"],
        "never viewed": ["--user", str(other_user), "--video", str(video)],
        "no view of video": ["--user", str(user), "--video", str(video), "--time", "1"],
        "not a training run": ["--user", str(user), "--video", str(video)],
        "use a .png name": ["--user", str(user), "--video", str(video)],
        "not a segment feature store": [
            "--user",
            str(user),
            "--video",
            str(video),
            "--features",
            str(tmp_path),
        ],  # fmt: skip
    }
    for message, args in cases.items():
        argv = [*base, *args, *out]
        if message == "not a training run":
            argv[3] = str(tmp_path)
        if message == "use a .png name":
            argv[-1] = str(tmp_path / "x.jpg")
        assert main(argv) == 2, message
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and message in err, err
    assert not (tmp_path / "x.png").exists()


def test_select_views_rows() -> None:
    import polars as pl

    table = pl.DataFrame(
        {"user_id": [1, 1, 2, 3], "video_id": [7, 8, 7, 7], "time_ms": [10, 20, 30, 40]}
    )
    assert select_views(table, [1], 7, None).tolist() == [0]
    assert select_views(table, [1, 3], 7, None).tolist() == [0, 3]
    assert select_views(table, [2], 7, 30).tolist() == [2]
    with pytest.raises(SegintError, match="views at: 30"):
        select_views(table, [2], 7, 31)


def test_segment_heatmap_checks_shapes(tmp_path: Path) -> None:
    values = np.full((2, 5), 0.5)
    path = segment_heatmap(
        values, [3, 4], [1, 4], [0, 0], ["a", "b"], "t", "score", tmp_path / "h.png"
    )
    assert _png_size(path)[0] > 0
    with pytest.raises(ValueError, match="one n/exit"):
        segment_heatmap(values, [3], [1], [0], ["a"], "t", "score", tmp_path / "bad.png")
    with pytest.raises(ValueError, match="slots"):
        segment_heatmap(values, [6, 4], [1, 4], [0, 0], ["a", "b"], "t", "s", tmp_path / "b.png")
