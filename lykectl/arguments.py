"""Parsing of list and `key=value` command-line arguments."""

from __future__ import annotations

from collections.abc import Iterable

import typer


def split_list(values: Iterable[str]) -> list[str]:
    """`["a,b", "c"]` -> `["a", "b", "c"]`: comma-separated and repeated options alike."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def parse_params(values: Iterable[str]) -> dict[str, str]:
    """`["k=v", "n=1"]` -> `{"k": "v", "n": "1"}`; a usage error (exit 2) without `=`."""
    params: dict[str, str] = {}
    for value in values:
        key, sep, param = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{value!r} is not key=value", param_hint="'--param'")
        params[key.strip()] = param
    return params
