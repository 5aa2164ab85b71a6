"""The declared layer order: no module imports a layer above its own.

    0  segint core   segint.* except the CLI: data, splits, source, provenance, metrics, ...
    1  model         the network and its config
    2  training, export, segrec, learned (peers: they may import each other)
    3  CLI           segint.cli, segint.commands.*

``service`` stands apart: it may import itself, the segint core and the torch-free
``export.manifest`` / ``export.contract`` only, never torch (tests/service/test_e2e.py checks
the running import too).

Every ``import`` statement counts, also the ones inside functions (a lazy import is still a
dependency: it only moves the failure to run time).
"""

from __future__ import annotations

import ast

from tests.paths import ROOT

PACKAGES = ("segint", "model", "training", "export", "segrec", "learned", "service")
CLI = ("segint.cli", "segint.commands")
SERVICE_MAY_IMPORT = ("export.manifest", "export.contract")


def layer(module: str) -> int | str | None:
    """The layer of a project module; None for third-party modules."""
    top = module.split(".")[0]
    if module == CLI[0] or module.startswith(CLI[0] + ".") or module.startswith(CLI[1]):
        return 3
    return {"segint": 0, "model": 1, "training": 2, "export": 2, "segrec": 2, "learned": 2,
            "service": "service"}.get(top)  # fmt: skip


def imports() -> dict[str, set[str]]:
    """module -> the absolute module names its import statements name."""
    out: dict[str, set[str]] = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
                    names.update(f"{node.module}.{a.name}" for a in node.names)
            out[name] = names
    return out


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer, and every import of the service from outside it."""
    upward = []
    for module, names in graph.items():
        own = layer(module)
        if not isinstance(own, int):
            continue  # the service is checked on its own
        for name in names:
            other = layer(name)
            if other == "service" or (isinstance(other, int) and other > own):
                upward.append(f"{module} (layer {own}) imports {name} (layer {other})")
    return sorted(set(upward))


def service_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports of the service other than itself, the core, the manifest/contract; or torch."""
    bad = []
    for module, names in graph.items():
        if layer(module) != "service":
            continue
        for name in names:
            other = layer(name)
            if name.split(".")[0] == "torch":
                bad.append(f"{module} imports {name}")
            elif other not in (None, 0, "service") and not name.startswith(SERVICE_MAY_IMPORT):
                bad.append(f"{module} imports {name} (layer {other})")
    return sorted(set(bad))


def test_no_module_imports_a_higher_layer() -> None:
    graph = imports()
    assert {"segint.splits", "model.network", "training.train", "segint.cli"} <= set(graph)
    assert upward_imports(graph) == []


def test_service_imports_only_the_core_and_the_manifest_never_torch() -> None:
    assert service_violations(imports()) == []


def test_the_checks_catch_what_they_are_for() -> None:
    """Not vacuous: the library importing the CLI, the model importing training, and the
    service importing torch or the model are each reported."""
    fake = {
        "segint.splits": {"segint.cli", "numpy"},
        "model.network": {"training.train.train"},
        "training.train": {"model.network", "segint.splits"},  # downward: fine
        "service.app": {"torch", "model.network", "export.manifest", "segint.vocab"},
    }
    assert upward_imports(fake) == [
        "model.network (layer 1) imports training.train.train (layer 2)",
        "segint.splits (layer 0) imports segint.cli (layer 3)",
    ]
    assert service_violations(fake) == [
        "service.app imports model.network (layer 1)",
        "service.app imports torch",
    ]


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of project modules that import each other, directly or around a loop
    (strongly connected components of more than one module; iterative Tarjan)."""
    adj = {m: sorted(n for n in names if n in graph and n != m) for m, names in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(adj[v]):
                work.append((v, i + 1))
                w = adj[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            for w in adj[v]:
                if w in on_stack:
                    low[v] = min(low[v], low[w])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return sorted(cycles)


def test_no_import_cycles() -> None:
    """E.g. export.onnx and export.ctr, or training.train and segint.cli, importing each
    other (lazy imports included)."""
    assert import_cycles(imports()) == []
    fake = {"export.onnx": {"export.ctr"}, "export.ctr": {"export.graph", "export.onnx"},
            "export.graph": set(), "a": {"b"}, "b": {"c"}, "c": {"a"}}  # fmt: skip
    assert import_cycles(fake) == [["a", "b", "c"], ["export.ctr", "export.onnx"]]
