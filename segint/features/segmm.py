"""The SegMM release format of segment features, and its import into our store.

SegMM ships one row-major memmap of ``dim``-wide vectors (float64 in the public release,
float32 in the authors' working copy; possibly split into parts) and a JSON map
``"<video_id>-<segment_index>" -> row`` (spec reference-implementation section 1.4). Parts are
read as one byte stream in the order given, so parts cut anywhere (even inside a row) work.

`SegMMFeatures` reads it directly; `import_segmm` streams it into a `FeatureWriter` in row
order (sequential reads, bounded memory), optionally L1-normalising each vector.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from segint.errors import DataError, SegintError
from segint.features.store import F32Array, FeatureStore, I64Array, l1_normalize
from segint.features.writer import FeatureWriter

log = logging.getLogger(__name__)
DTYPES = {"float32": np.float32, "float64": np.float64}
_CHUNK_BYTES = 64 << 20  # bytes read per import step


def parse_map(path: str | Path) -> tuple[I64Array, I64Array, I64Array]:
    """Parse the JSON map into ``(video_id, segment, row)`` int64 arrays (sorted by row)."""
    try:
        with open(path, "rb") as fh:
            raw: Any = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable SegMM map: {e}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object '<video_id>-<segment>' -> row")
    n = len(raw)
    vids = np.empty(n, np.int64)
    segs = np.empty(n, np.int64)
    rows = np.empty(n, np.int64)
    for i, (key, row) in enumerate(raw.items()):
        vid, sep, seg = str(key).rpartition("-")
        try:
            vids[i], segs[i], rows[i] = int(vid), int(seg), int(row)
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: bad entry {key!r}: {row!r} (want '<video_id>-<segment>': row)"
            ) from None
        if not sep or segs[i] < 0 or rows[i] < 0:
            raise DataError(f"{path}: bad entry {key!r}: {row!r}")
    del raw
    order = np.argsort(rows, kind="stable")
    return vids[order], segs[order], rows[order]


class SegMMFeatures:
    """Random and sequential access to SegMM memmap part(s).

    Args:
        parts: memmap file(s), concatenated in this order.
        dim: vector width (1024 for SegMM's CLIP features).
        dtype: ``float64`` (public release) or ``float32``.
    """

    def __init__(self, parts: Sequence[str | Path], dim: int, dtype: str) -> None:
        if dtype not in DTYPES:
            raise SegintError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if dim < 1:
            raise SegintError(f"--dim must be >= 1, got {dim}")
        self.parts = [Path(p) for p in parts]
        for p in self.parts:
            if not p.is_file():
                raise SegintError(f"memmap file not found: {p}")
        self.dim = dim
        self.dtype = np.dtype(DTYPES[dtype])
        self.row_bytes = dim * self.dtype.itemsize
        self._sizes = [p.stat().st_size for p in self.parts]
        total = sum(self._sizes)
        if total % self.row_bytes:
            raise DataError(
                f"memmap size {total} bytes is not a multiple of dim*{self.dtype.itemsize}="
                f"{self.row_bytes} (wrong --dim or --dtype?)"
            )
        self.n_rows = total // self.row_bytes
        self._starts = np.cumsum([0, *self._sizes])  # byte offset of each part

    def _read_bytes(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` of the concatenated parts."""
        out = bytearray()
        k = int(np.searchsorted(self._starts, offset, side="right")) - 1
        while n > 0 and k < len(self.parts):
            local = offset - int(self._starts[k])
            take = min(n, self._sizes[k] - local)
            with open(self.parts[k], "rb") as fh:
                fh.seek(local)
                out += fh.read(take)
            offset, n, k = offset + take, n - take, k + 1
        return bytes(out)

    def read_rows(self, start: int, count: int) -> F32Array:
        """Rows ``start .. start+count-1`` as float32 (count, dim)."""
        if start < 0 or start + count > self.n_rows:
            raise DataError(f"rows {start}..{start + count - 1} outside 0..{self.n_rows - 1}")
        buf = self._read_bytes(start * self.row_bytes, count * self.row_bytes)
        return np.frombuffer(buf, dtype=self.dtype).reshape(count, self.dim).astype(np.float32)

    def iter_chunks(self, rows: I64Array) -> Iterator[tuple[npt.NDArray[np.intp], F32Array]]:
        """For sorted ``rows``, yield ``(positions into rows, vectors)`` chunk by chunk.

        Each chunk reads one contiguous byte range covering its rows (gaps included), so
        the file is read sequentially once.
        """
        max_rows = max(1, _CHUNK_BYTES // self.row_bytes)
        i = 0
        while i < len(rows):
            lo = int(rows[i])
            j = int(np.searchsorted(rows, lo + max_rows, side="left"))
            block = self.read_rows(lo, int(rows[j - 1]) - lo + 1)
            yield np.arange(i, j), block[rows[i:j] - lo]
            i = j


def import_segmm(
    parts: Sequence[str | Path],
    map_path: str | Path,
    out: str | Path,
    *,
    dim: int,
    dtype: str,
    l1: bool = False,
    encoder: str = "segmm:clip-vit-large-patch14-336",
    feature: str = "patch_mean",
    progress: bool = True,
) -> dict[str, int]:
    """Convert a SegMM memmap + JSON map into our store at ``out`` (appending).

    Keys already in ``out`` are skipped, so an interrupted import resumes. Returns counts of
    rows imported and skipped.
    """
    mm = SegMMFeatures(parts, dim, dtype)
    vids, segs, rows = parse_map(map_path)
    if len(rows) and rows[-1] >= mm.n_rows:
        raise DataError(f"{map_path}: row {rows[-1]} beyond the memmap's {mm.n_rows} rows")
    info = {"source": {"segmm_map": str(map_path), "parts": [str(p) for p in parts]}}
    with FeatureWriter(
        out, dim, encoder=encoder, feature=feature, info={**info, "l1_normalized": l1}
    ) as w:
        if w.meta.get("l1_normalized", False) != l1:
            raise SegintError(f"{out}: store has l1_normalized={w.meta.get('l1_normalized')}")
        done = np.zeros(len(rows), dtype=bool)
        if w.n_rows:
            done = FeatureStore.open(out).contains(vids, segs)
        todo = np.flatnonzero(~done)
        bar = tqdm(total=len(todo), unit="row", desc="import", disable=not progress)
        for pos, block in mm.iter_chunks(rows[todo]):
            sel = todo[pos]
            w.add_rows(vids[sel], segs[sel], l1_normalize(block) if l1 else block)
            w.maybe_commit()
            bar.update(len(sel))
        bar.close()
    log.info("imported %d rows into %s (%d already there)", len(todo), out, int(done.sum()))
    return {"imported": int(len(todo)), "skipped_existing": int(done.sum())}
