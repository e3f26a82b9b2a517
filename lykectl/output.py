"""Rendering objects as a table (the kind's printer columns), YAML or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lykectl.jsonpath import cell
from lykeion.api.kinds import Kind


class Output(StrEnum):
    table = "table"
    wide = "wide"
    yaml = "yaml"
    json = "json"


def human_duration(seconds: float) -> str:
    """kubectl's compact ages: 45s, 3m20s, 2h, 5d..."""
    s = max(int(seconds), 0)
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d"


def age(obj: dict[str, Any], now: datetime | None = None) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - then).total_seconds())


def rows(
    kind: Kind,
    items: Sequence[dict[str, Any]],
    wide: bool = False,
    all_namespaces: bool = False,
    now: datetime | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Headers and cells: NAMESPACE (with -A), NAME, the printer columns, AGE."""
    columns = [c for c in kind.columns if wide or c.priority == 0]
    headers = [*(["NAMESPACE"] if all_namespaces else []), "NAME"]
    headers += [c.name.upper() for c in columns] + ["AGE"]
    table = []
    for obj in items:
        metadata = obj.get("metadata", {})
        row = [*([metadata.get("namespace", "")] if all_namespaces else []), metadata["name"]]
        row += [cell(obj, c.json_path) for c in columns] + [age(obj, now)]
        table.append(row)
    return headers, table


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without `metadata.managedFields` (kubectl hides them too)."""
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": metadata}


class DataOutput(StrEnum):
    """Formats of plain data (rows that are not Kubernetes objects)."""

    table = "table"
    yaml = "yaml"
    json = "json"


def _print_table(table: Table) -> None:
    console = Console(highlight=False)
    if console.is_terminal:
        console.print(table)
        return
    # Piped output is read by scripts: never wrap or truncate a cell, no trailing blanks.
    console = Console(highlight=False, width=100_000)
    with console.capture() as captured:
        console.print(table)
    typer.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def show(
    kind: Kind,
    items: Sequence[dict[str, Any]],
    output: Output,
    single: bool = False,
    all_namespaces: bool = False,
    namespace: str = "",
) -> None:
    """Print one object (`single`) or a list in the requested format."""
    objects = [clean(obj) for obj in items]
    if output in (Output.yaml, Output.json):
        document: Any = (
            objects[0]
            if single and objects
            else {"apiVersion": "v1", "kind": "List", "items": objects}
        )
        if output is Output.json:
            typer.echo(json.dumps(document, indent=2))
        else:
            typer.echo(yaml.safe_dump(document, sort_keys=False), nl=False)
        return
    if not objects:
        where = "any namespace" if all_namespaces else f"namespace {namespace}"
        typer.echo(f"No {kind.plural} found in {where}.", err=True)
        return
    headers, cells = rows(kind, objects, wide=output is Output.wide, all_namespaces=all_namespaces)
    print_rows(headers, cells)


def print_rows(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> None:
    """A plain table: bold headers, no borders, never wrapped when piped."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in cells:
        table.add_row(*(Text(value) for value in row))
    _print_table(table)


def print_data(document: Any, output: DataOutput) -> None:
    """`document` as JSON or YAML (the table form is the caller's)."""
    if output is DataOutput.json:
        typer.echo(json.dumps(document, indent=2))
    else:
        typer.echo(yaml.safe_dump(document, sort_keys=False), nl=False)
