"""Draw the package layers of segint from the real import statements (docs/architecture.md).

    .venv/bin/python docs/layers.py            # writes docs/img/layers.png, rewrites the Mermaid block

The import graph and the layer of each module come from ``tests/test_layers.py`` (`imports`,
`layer`), the test that enforces the order, so the picture cannot drift from what is checked:
it walks every ``import`` of every module (lazy ones inside functions included), keeps the
project modules and counts, per pair of boxes, the distinct (module, imported module) pairs.
The torch-free ``export.manifest`` / ``export.contract`` get their own box, because they are
the only part of ``export`` the service may import.

An edge ``A -> B`` means "A imports B". An edge that goes up a layer, or into the service,
would be drawn red; the test fails on it first.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from tests.test_layers import SERVICE_MAY_IMPORT, imports, layer, upward_imports  # noqa: E402

PNG = ROOT / "docs" / "img" / "layers.png"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- layers:begin (docs/layers.py) -->", "<!-- layers:end -->"

# Box -> (x, y, label). y is the layer (3 = CLI on top); the service stands apart on the right.
BOXES = {
    "cli": (1.95, 3.0, "CLI\nsegint.cli, segint.commands.*"),
    "training": (0.0, 2.0, "training"),
    "segrec": (1.3, 2.0, "segrec"),
    "export": (2.6, 2.0, "export\n(onnx, ctr, graph, fused)"),
    "learned": (3.9, 2.0, "learned"),
    "model": (-0.2, 1.0, "model"),
    "contract": (5.4, 1.0, "export.manifest\nexport.contract\n(no torch)"),
    "core": (
        1.95,
        0.0,
        "segint core\ndata, splits, source, provenance,\nmetrics, heads, features, ...",
    ),
    "service": (5.4, 2.0, "service\n(FastAPI + ORT + Redis,\nno torch)"),
}
LAYER_NAMES = {3: "layer 3: CLI", 2: "layer 2: peers", 1: "layer 1: model", 0: "layer 0: core"}


def box(module: str) -> str | None:
    """The box of a project module (None for third-party modules)."""
    if module.startswith(SERVICE_MAY_IMPORT):
        return "contract"
    kind = layer(module)
    if kind is None:
        return None
    if kind == 3:
        return "cli"
    if kind == 0:
        return "core"
    return module.split(".")[0]  # model, training, export, segrec, learned, service


def edges() -> Counter[tuple[str, str]]:
    """(importer box, imported box) -> distinct module pairs, self-loops left out."""
    graph = imports()
    modules = set(graph)
    pairs: set[tuple[str, str]] = set()
    for src, names in graph.items():
        # ``from a.b import c`` names a.b and a.b.c: c is a module or a name inside a.b.
        targets = {n if n in modules else n.rsplit(".", 1)[0] for n in names}
        targets = {t for t in targets if t in modules and t != src}
        # ``from segint import provenance`` counts segint.provenance, not also the package.
        pairs |= {(src, t) for t in targets if not any(o.startswith(t + ".") for o in targets)}
    out: Counter[tuple[str, str]] = Counter()
    for src, dst in pairs:
        a, b = box(src), box(dst)
        if a is not None and b is not None and a != b:
            out[(a, b)] += 1
    return out


def upward(a: str, b: str) -> bool:
    """An edge against the declared order (what tests/test_layers.py fails on)."""
    ya, yb = BOXES[a][1], BOXES[b][1]
    return b == "service" or (a != "service" and yb > ya)


def present() -> list[str]:
    """The boxes that hold modules on this checkout (``learned`` may not exist yet)."""
    found = {box(m) for m in imports()}
    return [k for k in BOXES if k in found]


def draw(counts: Counter[tuple[str, str]], path: Path) -> None:
    fig = Figure(figsize=(12, 6.5))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1.3, 6.0)
    ax.set_ylim(-0.6, 3.7)
    ax.axis("off")
    for y, name in LAYER_NAMES.items():
        ax.axhspan(y - 0.42, y + 0.42, xmin=0, xmax=0.78, color="0.94", zorder=0)
        ax.text(-1.25, y, name, va="center", fontsize=9, color="0.35")
    w, h = 0.9, 0.5
    for key in present():
        x, y, label = BOXES[key]
        colour = "#fde2c8" if key in ("service", "contract") else "#d6e6f5"
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03", fc=colour, ec="0.3"
            )
        )
        ax.text(x, y, label, ha="center", va="center", fontsize=8)
    for (a, b), n in sorted(counts.items()):
        (xa, ya, _), (xb, yb, _) = BOXES[a], BOXES[b]
        rad = 0.0
        if ya == yb and abs(xa - xb) < 1.5:  # neighbours in one layer: side to side
            side = w / 2 if xb > xa else -w / 2
            start, end = (xa + side, ya), (xb - side, yb)
        elif ya == yb:  # over the boxes between them
            start, end, rad = (xa, ya + h / 2), (xb, yb + h / 2), 0.3 if xb < xa else -0.3
        else:
            start = (xa, ya - h / 2 if ya > yb else ya + h / 2)
            end = (xb, yb + h / 2 if ya > yb else yb - h / 2)
        arrow = FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=12,
            connectionstyle=f"arc3,rad={rad}",
            color="red" if upward(a, b) else "0.35",
            lw=0.8 + 0.12 * min(n, 20),
            shrinkA=2,
            shrinkB=2,
            zorder=1,
        )
        ax.add_patch(arrow)
        # The count sits short of the middle, before the arrows converge on a box.
        lx, ly = start[0] + 0.45 * (end[0] - start[0]), start[1] + 0.45 * (end[1] - start[1])
        if ya == yb:
            lx, ly = (start[0] + end[0]) / 2, ya + (0.12 if not rad else h / 2 + 0.2)
        ax.text(
            lx, ly, str(n), fontsize=7.5, color="0.1", ha="center", va="center",
            bbox={"fc": "white", "ec": "0.6", "pad": 1.0, "boxstyle": "round"},
        )  # fmt: skip
    ax.text(
        -1.25, -0.5,
        "A → B: A imports B (every import statement, lazy ones included); "
        "the number counts distinct (module, imported module) pairs. Generated by docs/layers.py.",
        fontsize=7.5, color="0.35",
    )  # fmt: skip
    fig.savefig(path, dpi=130)


def mermaid(counts: Counter[tuple[str, str]]) -> str:
    ids = {k: k.replace(".", "_") for k in BOXES}
    lines = ["```mermaid", "flowchart TD"]
    for key in present():
        label = BOXES[key][2].replace("\n", "<br>")
        lines.append(f'    {ids[key]}["{label}"]')
    for (a, b), n in sorted(counts.items(), key=lambda e: (-BOXES[e[0][0]][1], e[0])):
        lines.append(f"    {ids[a]} -->|{n}| {ids[b]}")
    lines.append("```")
    return "\n".join(lines)


def main() -> int:
    graph = imports()
    bad = upward_imports(graph)
    counts = edges()
    draw(counts, PNG)
    text = DOC.read_text()
    block = f"{BEGIN}\n{mermaid(counts)}\n{END}"
    text, n = re.subn(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    if n != 1:
        sys.stderr.write(f"{DOC}: no {BEGIN} ... {END} block to rewrite\n")
        return 2
    DOC.write_text(text)
    sys.stdout.write(
        f"{len(graph)} modules, {sum(counts.values())} cross-box imports in {len(counts)} edges, "
        f"{len(bad)} upward; wrote {PNG.relative_to(ROOT)} and the Mermaid block of "
        f"{DOC.relative_to(ROOT)}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
