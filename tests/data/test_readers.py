"""Log readers and `segint data prepare`: labels, filters, malformed input."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest

from segint.data import Filters, load_table, prepare_lazy, prepared_format, write_prepared
from segint.errors import DataError
from segint.segments import exit_slot, label_1d, n_segments
from tests.cli import segint
from tests.paths import BUNDLED_LOG, KUAIRAND_FIXTURE, KUAIRAND_LOG, SEGMM_SAMPLE

HEADER = "user_id,video_id,time_ms,duration_ms,play_time_ms\n"


def test_segment_arithmetic_matches_the_spec():
    """N = ceil(d/5000); exit = ceil(p/5000)-1, or N when watched to the end."""
    assert n_segments([1, 5000, 5001, 199_999]).tolist() == [1, 1, 2, 40]
    assert exit_slot([5052, 10000, 10018, 1], [60000] * 4).tolist() == [1, 1, 2, 0]
    assert exit_slot([12000, 9000], [12000, 8000]).tolist() == [3, 2]
    assert label_1d(2, 5) == [1, 1, 0, -1, -1]
    assert label_1d(3, 3) == [1, 1, 1]


def test_reproduces_segmm_label_1d_on_all_rows(shared_data):
    """Our label_1d equals the SegMM authors' label_1D on every one of the 10,000 rows."""
    raw = pl.read_csv(SEGMM_SAMPLE)
    ours = load_table(SEGMM_SAMPLE, "segmm", Filters(drop_duplicates=False))
    assert ours.height == raw.height == 10_000
    expected = {
        (r["user_id"], r["video_id"], r["time_ms"]): [
            int(x) for x in r["label_1D"].strip("[]").split()
        ]
        for r in raw.iter_rows(named=True)
    }
    got = {
        (r["user_id"], r["video_id"], r["time_ms"]): list(r["label_1d"])
        for r in ours.iter_rows(named=True)
    }
    assert got == expected


def test_kuairand_filters_and_duplicates(shared_data, tmp_path):
    """Each filter drops what the spec says; exact duplicate rows go; gz reads like csv."""
    summary = write_prepared([KUAIRAND_FIXTURE], "kuairand", tmp_path / "p")
    raw = pl.read_csv(KUAIRAND_FIXTURE)
    kept = pl.read_parquet(tmp_path / "p" / "interactions.parquet")
    assert summary["rows_read"] == raw.height == 2000
    filtered = raw.filter(
        (pl.col("play_time_ms") > 0)
        & (pl.col("duration_ms") > 0)
        & (pl.col("duration_ms") < 200_000)
        & (pl.col("is_click") > 0)
    )
    assert kept.height == filtered.unique().height == summary["rows_kept"]
    assert summary["dropped"]["duplicates"] == filtered.height - filtered.unique().height > 0
    assert (
        summary["dropped"]["click"]
        == raw.filter(
            (pl.col("play_time_ms") > 0)
            & (pl.col("duration_ms") > 0)
            & (pl.col("duration_ms") < 200_000)
            & (pl.col("is_click") == 0)
        ).height
    )
    assert (
        kept["exit_slot"].to_list() == exit_slot(kept["play_time_ms"], kept["duration_ms"]).tolist()
    )
    assert sum(summary["exit_slot_histogram"].values()) == kept.height
    gz = tmp_path / "log.csv.gz"
    gz.write_bytes(gzip.compress(KUAIRAND_FIXTURE.read_bytes()))
    assert load_table(gz, "kuairand").equals(load_table(KUAIRAND_FIXTURE, "kuairand"))


def test_filters_are_configurable(shared_data):
    """Unclicked rows, a lower S_max and duplicates are all switchable."""
    base = load_table(KUAIRAND_FIXTURE, "kuairand")
    unclicked = load_table(KUAIRAND_FIXTURE, "kuairand", Filters(require_click=False))
    short = load_table(KUAIRAND_FIXTURE, "kuairand", Filters(s_max=10))
    assert unclicked.height > base.height > short.height
    assert short["duration_ms"].max() < 50_000
    assert (
        load_table(KUAIRAND_FIXTURE, "kuairand", Filters(drop_duplicates=False)).height
        > base.height
    )


def test_bundled_log_is_the_shared_log(shared_data):
    """The repository's gzipped slice is byte-identical to the shared KuaiRand-Pure log."""
    assert gzip.decompress(BUNDLED_LOG.read_bytes()) == KUAIRAND_LOG.read_bytes()


def test_canonical_csv_and_parquet(tmp_path):
    """The canonical format reads from CSV and Parquet alike."""
    rows = "1,10,100,12000,3000\n1,11,200,7000,9000\n2,10,150,12000,12000\n"
    (tmp_path / "log.csv").write_text(HEADER + rows)
    a = load_table(tmp_path / "log.csv", "canonical")
    pl.read_csv(tmp_path / "log.csv").write_parquet(tmp_path / "log.parquet")
    b = load_table(tmp_path / "log.parquet", "canonical")
    assert a.equals(b)
    assert a["exit_slot"].to_list() == [0, 2, 3]
    assert [list(x) for x in a["label_1d"]] == [[0, -1, -1], [1, 1], [1, 1, 1]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("user_id,video_id,time_ms,duration_ms\n1,2,3,4\n", "missing column 'play_time_ms'"),
        (
            HEADER + "1,10,100,12000,3000\n1,11,2x0,7000,9000\n",
            "row 2 (line 3), column 'time_ms': non-integer value '2x0'",
        ),
        (
            HEADER + "1,10,100,12000,3000\n1,11,200,,9000\n",
            "row 2 (line 3), column 'duration_ms': missing value",
        ),
    ],
)
def test_malformed_files_name_file_row_and_column(tmp_path, content, message):
    """A malformed file raises DataError naming the file and, where it applies, row and column."""
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        prepare_lazy([path], "canonical")
    assert str(path) in str(e.value)


def test_cli_bad_file_exits_2_with_one_line(tmp_path):
    """The CLI turns a malformed file into exit code 2 and one line on stderr."""
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "1,10,abc,12000,3000\n")
    proc = segint(
        "data",
        "prepare",
        "--input",
        str(path),
        "--format",
        "canonical",
        "--out",
        str(tmp_path / "o"),
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "column 'time_ms'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "interactions.parquet").exists()


def test_cli_prepare_prints_summary(shared_data, tmp_path):
    """`segint data prepare` writes Parquet + summary.json and prints drops and the histogram."""
    proc = segint("data", "prepare", "--input", str(KUAIRAND_FIXTURE), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert f"kept {summary['rows_kept']:,} rows" in proc.stdout
    assert "dropped by click" in proc.stdout and "exit slot histogram" in proc.stdout
    table = pl.read_parquet(tmp_path / "interactions.parquet")
    assert set(table.columns) >= {
        "user_id",
        "video_id",
        "time_ms",
        "duration_ms",
        "play_time_ms",
        "n_segments",
        "exit_slot",
        "label_1d",
    }
    assert np.all(table["n_segments"].to_numpy() == table["label_1d"].list.len().to_numpy())


def test_partitioned_deduplication_matches_one_pass(shared_data, tmp_path):
    """Cutting the log into user-hash parts (bounded memory) gives the same rows as one pass."""
    one = write_prepared([KUAIRAND_FIXTURE], "kuairand", tmp_path / "one")
    many = write_prepared([KUAIRAND_FIXTURE], "kuairand", tmp_path / "many", partition_rows=100)
    assert one["parts"] == 1 and many["parts"] > 3
    assert many["dropped"] == one["dropped"] and many["rows_kept"] == one["rows_kept"]
    key = ["user_id", "time_ms", "video_id", "play_time_ms"]
    a = load_table(tmp_path / "one").sort(key)
    b = load_table(tmp_path / "many").sort(key)
    assert a.equals(b)


def test_prepared_data_records_its_format(shared_data, tmp_path):
    """`prepared_format` reads the format `write_prepared` recorded; None for a raw log, a
    folder without a summary, or an unreadable one."""
    write_prepared([KUAIRAND_FIXTURE], "kuairand", tmp_path / "p")
    assert prepared_format(tmp_path / "p") == "kuairand"
    assert prepared_format(tmp_path / "p" / "interactions.parquet") == "kuairand"
    assert prepared_format(KUAIRAND_FIXTURE) is None  # a raw log: no summary beside it
    (tmp_path / "bad").mkdir()
    assert prepared_format(tmp_path / "bad") is None
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    assert prepared_format(tmp_path / "bad") is None
    (tmp_path / "bad" / "summary.json").write_text('["a list"]')
    assert prepared_format(tmp_path / "bad") is None
