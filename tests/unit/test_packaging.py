"""The wheel (and so every image) holds every package of the source tree: setuptools finds
the packages as pyproject.toml's `[tool.setuptools.packages.find]` says, and a package
directory it did not find would be missing from a non-editable install while an editable
one still imports it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parents[2]


def _source_packages() -> set[str]:
    found = set()
    for base in (ROOT / "operator", ROOT):
        for init in base.glob("**/__init__.py"):
            package = init.parent.relative_to(base)
            top = package.parts[0]
            if top in ("lykeion", "lykectl") and (base / top / "__init__.py").exists():
                if base == ROOT and top == "lykeion":
                    continue
                found.add(".".join(package.parts))
    return found


def _found_packages() -> set[str]:
    """The packages setuptools puts in the wheel, found as `packages.find` says."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
        "find"
    ]
    finder = (
        setuptools.find_namespace_packages
        if find.get("namespaces", True)
        else setuptools.find_packages
    )
    found: set[str] = set()
    for where in find["where"]:
        found.update(
            finder(
                str(ROOT / where),
                include=find.get("include", ["*"]),
                exclude=find.get("exclude", []),
            )
        )
    return found


def test_every_source_package_is_in_the_wheel() -> None:
    assert _source_packages() - _found_packages() == set()


def test_the_found_packages_exist() -> None:
    assert _found_packages() <= _source_packages()
