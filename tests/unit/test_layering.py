"""The import layering docs/architecture.md states ("Packages and how they import each
other"), checked on the source: every `import` and `from ... import` in operator/lykeion,
at module level or inside a function, read with `ast` (nothing is imported).

A unit is a top-level package or module of `lykeion` (`serving`, `kube`; the package's
own `__init__` is `lykeion`), or a module of a package that `ORDER` names on its own
(`features.run`: the feature engines sit above the stores, the definitions below them).
Units are ordered bottom first; a module imports its own unit or units below it, never one
above, except for the arrows listed in `AGAINST_THE_ORDER`, each with its reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "lykeion"

ORDER = [
    # leaves: the package's constants, local infrastructure, shared small modules
    "lykeion", "local", "host_state", "conditions", "names", "request_body", "access",
    "watch_health", "metrics",
    # the one-node cluster and the serving systems' controllers on it, built on `local`
    "cluster", "serving_controllers",
    # the CRD models, then the API server I/O on them
    "api", "kube",
    # feature definitions and their compilation to SQL
    "features",
    # the online and offline stores, on the definitions
    "stores",
    # the feature engines, on the stores: Dataflow's options, late rows, the in-process and
    # Beam runs, and what the executors launch
    "features.dataflow", "features.lateness", "features.materialize", "features.pipeline",
    "features.run",
    # the Feature API and Catalog API (HTTP), on the definitions and the online store
    "feature_api",
    # the gate's metrics and the labels reader, shared by serving and training
    "evaluation",
    "serving",
    "training",
    "executors",
    "config", "object_index", "rollouts", "runtime",
    "handlers",
    "operator_main",
]  # fmt: skip
"""Every unit of `lykeion`, bottom first (the layers of docs/architecture.md, in order)."""

AGAINST_THE_ORDER = {
    # docs: a validator reads the one feature-name rule, lazily.
    ("lykeion.api.model", "lykeion.features.reference"),
}
"""(importing module, imported module) arrows that run up the order, each for a reason."""

ONLY = {
    # training reads a model and profiles its data exactly as the server does
    ("training", "serving"): {"lykeion.serving.model", "lykeion.serving.drift"},
    # a model server's container is rendered with the server's own configuration
    ("executors", "serving"): {"lykeion.serving.config"},
}
"""(importing unit, imported unit) -> the only modules of the latter the former imports."""

HANDLER_KINDS = {
    "families": "ModelFamily",
    "features": "FeatureManifest",
    "materialization": "FeatureManifest",
    "models": "Model",
    "training": "Model",
    "deployments": "Deployment",
    "rollout": "Deployment",
}
"""handlers/ module -> the kind it handles; the others (`named_runs`) serve every kind and
`__init__` registers them all."""
HANDLERS_SHARED = {"__init__", "named_runs"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    base = PACKAGE / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The `lykeion` modules (or, for a name that is not a module, its package) that the
    statements of `tree` import."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if _is_module(child) else base)
    return {name for name in found if name == "lykeion" or name.startswith("lykeion.")}


def arrows() -> set[tuple[str, str]]:
    """(importing module, imported module) for every import inside `lykeion`."""
    edges = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for target in _imported(tree, module, path.name == "__init__.py"):
            edges.add((module, target))
    return edges


def unit(module: str) -> str:
    """`lykeion.serving.app` -> `serving`; `lykeion.features.run` (named in `ORDER`) ->
    `features.run`; the package itself -> `lykeion`."""
    parts = module.split(".")
    if len(parts) == 1:
        return "lykeion"
    own = ".".join(parts[1:3])
    return own if own in ORDER else parts[1]


def against_the_order(edges: Iterable[tuple[str, str]]) -> list[str]:
    """The arrows that import a unit above the importer's (not listed as exceptions), and
    those into a unit that only some of its modules may be imported from."""
    rank = {name: i for i, name in enumerate(ORDER)}
    wrong = []
    for importer, imported in sorted(edges):
        a, b = unit(importer), unit(imported)
        if a == b:
            continue
        if rank[b] > rank[a] and (importer, imported) not in AGAINST_THE_ORDER:
            wrong.append(f"{importer} imports {imported} ({b} is above {a})")
        allowed = ONLY.get((a, b))
        if allowed is not None and imported not in allowed:
            wrong.append(f"{importer} imports {imported}: {a} imports only {sorted(allowed)}")
    return wrong


def across_kinds(edges: Iterable[tuple[str, str]]) -> list[str]:
    """Handler modules that import a handler module of another kind."""
    wrong = []
    for importer, imported in sorted(edges):
        if not (
            importer.startswith("lykeion.handlers.") and imported.startswith("lykeion.handlers.")
        ):
            continue
        a, b = importer.rsplit(".", 1)[1], imported.rsplit(".", 1)[1]
        if b in HANDLERS_SHARED or a == b:
            continue
        if HANDLER_KINDS.get(a) != HANDLER_KINDS[b]:
            wrong.append(f"{importer} ({HANDLER_KINDS.get(a)}) imports {imported} "
                         f"({HANDLER_KINDS[b]})")  # fmt: skip
    return wrong


EDGES = arrows()


def test_every_unit_and_handler_module_has_a_place() -> None:
    units = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    units |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    top = {name for name in ORDER if "." not in name}
    assert units | {"lykeion"} == top, "add the new unit to ORDER and to the docs"
    gone = [name for name in ORDER if "." in name and not _is_module(f"lykeion.{name}")]
    assert gone == [], "a module ORDER names on its own no longer exists"
    handlers = {p.stem for p in (PACKAGE / "handlers").glob("*.py")}
    assert handlers == set(HANDLER_KINDS) | HANDLERS_SHARED


def test_imports_point_down_the_layers() -> None:
    wrong = against_the_order(EDGES)
    assert not wrong, "against docs/architecture.md's layering:\n" + "\n".join(wrong)


def test_handler_modules_of_different_kinds_do_not_import_each_other() -> None:
    wrong = across_kinds(EDGES)
    assert not wrong, "\n".join(wrong)


def test_every_listed_exception_still_occurs() -> None:
    # One that no longer occurs is removed from AGAINST_THE_ORDER (and from the docs).
    assert sorted(AGAINST_THE_ORDER - EDGES) == []


def test_the_import_reader_sees_lazy_and_from_package_imports() -> None:
    # outcomes.py imports evaluation inside functions; deployments.py imports the rollout
    # module as `from lykeion.handlers import rollout`.
    assert ("lykeion.serving.outcomes", "lykeion.evaluation.scoring") in EDGES
    assert ("lykeion.handlers.deployments", "lykeion.handlers.rollout") in EDGES


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("lykeion.serving.app", "lykeion.training.run"),  # serving on training
        ("lykeion.executors.local", "lykeion.handlers.models"),  # executors on handlers
        ("lykeion.evaluation.scoring", "lykeion.serving.model"),  # evaluation on serving
        ("lykeion.local.processes", "lykeion.names"),  # local on anything
        ("lykeion.training.run", "lykeion.serving.enrich"),  # a part training does not use
        ("lykeion.features.view", "lykeion.stores.online.base"),  # a definition on a store
        ("lykeion.stores.online.sqlite", "lykeion.features.materialize"),  # a store on an engine
        ("lykeion.stores.online.base", "lykeion.feature_api.app"),  # a store on the Feature API
        ("lykeion.features.reference", "lykeion.feature_api.catalog"),  # definitions on it
    ],
)
def test_an_arrow_against_the_layering_is_reported(importer: str, imported: str) -> None:
    assert against_the_order({(importer, imported)}) != []


def test_a_handler_importing_another_kinds_module_is_reported() -> None:
    edge = ("lykeion.handlers.models", "lykeion.handlers.materialization")
    assert across_kinds({edge}) != []
    assert across_kinds({("lykeion.handlers.models", "lykeion.handlers.named_runs")}) == []
