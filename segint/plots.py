"""Figures drawn from model outputs (numpy in, PNG out); matplotlib without pyplot.

`segment_heatmap` draws the paper's Figure 6: for one video, a row per view, a column per
outcome slot (segments ``0..N-1`` and the completion outcome ``N``), coloured by a per-slot
score, with the slot where the view actually ended boxed in red and the model's most likely
exit dotted. Figures are built on `matplotlib.figure.Figure` and rendered by the Agg canvas,
so no GUI backend or global pyplot state is involved (safe in servers and tests).

Shapes: ``R`` rows (views), ``S`` slots (``>= N + 1`` of every row).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

# Annotate every cell with its value only while the numbers stay legible.
_ANNOTATE_MAX_COLS = 24
_ANNOTATE_MAX_ROWS = 16


def segment_heatmap(
    values: npt.ArrayLike,
    n_segments: npt.ArrayLike,
    exit_slots: npt.ArrayLike,
    predicted_slots: npt.ArrayLike,
    row_labels: Sequence[str],
    title: str,
    colorbar_label: str,
    out: str | Path,
    value_range: tuple[float, float] | None = (0.0, 1.0),
) -> Path:
    """Write the segment heatmap of ``R`` views of one video to the PNG ``out``.

    Args:
        values: (R, S) score of each outcome slot; only slots ``0..N`` of a row are drawn.
        n_segments: (R,) segments ``N`` of each row's video (columns ``> N`` are blank).
        exit_slots: (R,) where each view actually ended, ``0..N`` (``N`` = watched to the end).
        predicted_slots: (R,) the model's most likely exit slot of each view.
        row_labels: R labels, top to bottom.
        title: figure title.
        colorbar_label: what the colour means (e.g. "segment interest σ(logit)").
        out: PNG path; parent directories are created.
        value_range: fixed colour range, or None to fit the drawn values.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    v = np.asarray(values, dtype=np.float64)
    n = np.asarray(n_segments, dtype=np.int64)
    exits = np.asarray(exit_slots, dtype=np.int64)
    pred = np.asarray(predicted_slots, dtype=np.int64)
    rows = v.shape[0]
    if not (len(n) == len(exits) == len(pred) == len(row_labels) == rows) or rows == 0:
        raise ValueError(f"need one n/exit/prediction/label per row of values, {rows} rows")
    cols = int(n.max()) + 1  # outcomes 0..N of the longest row
    if v.shape[1] < cols:
        raise ValueError(f"values have {v.shape[1]} slots, rows need {cols}")
    grid = np.full((rows, cols), np.nan)  # (R, N_max + 1); NaN = no such outcome
    for i in range(rows):
        grid[i, : n[i] + 1] = v[i, : n[i] + 1]

    width = min(2.8 + 0.55 * cols, 22.0)
    height = min(1.6 + 0.45 * rows, 14.0)
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    lo, hi = value_range if value_range is not None else (np.nanmin(grid), np.nanmax(grid))
    image = ax.imshow(
        np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", vmin=lo, vmax=hi,
        interpolation="nearest",
    )  # fmt: skip
    fig.colorbar(image, ax=ax, label=colorbar_label, fraction=0.05, pad=0.02)

    if cols <= _ANNOTATE_MAX_COLS and rows <= _ANNOTATE_MAX_ROWS:
        mid = (lo + hi) / 2
        for i, j in zip(*np.nonzero(np.isfinite(grid)), strict=True):
            ax.text(
                j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                color="black" if grid[i, j] > mid else "white",
            )  # fmt: skip
    for i in range(rows):
        # Actual exit: a red box around the cell; the model's most likely exit: a dot.
        ax.add_patch(
            Rectangle((exits[i] - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)
        )
        ax.plot(pred[i], i + 0.32, marker="o", markersize=4, color="white", markeredgecolor="k")

    ax.set_xticks(range(cols))
    ax.set_xticklabels([str(j) for j in range(cols - 1)] + ["end"])
    ax.set_xlabel("segment (5 s each); 'end' = watched to the end")
    ax.set_yticks(range(rows))
    ax.set_yticklabels(list(row_labels), fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.plot([], [], "s", markerfacecolor="none", markeredgecolor="red", label="actual exit")
    ax.plot([], [], "o", color="white", markeredgecolor="k", markersize=4, label="predicted exit")
    fig.legend(loc="outside lower right", ncols=2, fontsize=8, frameon=False)

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
