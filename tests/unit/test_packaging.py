"""The wheel (and so every image) holds every package of the source tree: setuptools is
given an explicit `packages` list in pyproject.toml, so a new package directory left out
of it is missing from a non-editable install while an editable one still imports it."""

from __future__ import annotations

import tomllib
from pathlib import Path

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


def test_every_source_package_is_in_the_wheel() -> None:
    declared = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    assert _source_packages() - declared == set()


def test_the_listed_packages_exist() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    assert set(declared) <= _source_packages()
