"""`delete`: ask the API server to delete an object, then say whether it is gone or what
still holds it (a finalizer waiting for the operator, a family still used by Models), and
with `--wait` wait, bounded, until it is gone."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from lykectl.client import Cluster, resource
from lykectl.errors import CliError
from lykectl.output import DataOutput, print_data
from lykeion.api.kinds import MODEL, MODEL_FAMILY, Kind

POLL_INTERVAL = 0.5
SHOWN = 10
"""Names listed at most when saying which objects hold a deletion."""


@dataclass(frozen=True)
class Deletion:
    """Where a deletion stands: `blocked_by` is None once the object is gone."""

    kind: Kind
    name: str
    namespace: str
    blocked_by: str | None

    @property
    def deleted(self) -> bool:
        return self.blocked_by is None

    def line(self) -> str:
        if self.blocked_by is None:
            return f"{resource(self.kind, self.name)} deleted"
        return f"{resource(self.kind, self.name)} deletion requested; {self.blocked_by}"

    def document(self) -> dict[str, Any]:
        return {
            "object": resource(self.kind, self.name),
            "namespace": self.namespace,
            "deleted": self.deleted,
            "waitingFor": self.blocked_by,
        }


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def blocked_by(cluster: Cluster, kind: Kind, obj: dict[str, Any]) -> str:
    """Why an object whose deletion was requested still exists, in words.

    A ModelFamily is held by the Models of that family (the operator's finalizer stays
    until none is left); any object by its finalizers, with the reason its `Ready`
    condition gives when the operator has said one."""
    name = obj["metadata"]["name"]
    if kind is MODEL_FAMILY:
        models = sorted(
            m["metadata"]["name"]
            for m in cluster.list(MODEL)
            if (m.get("spec") or {}).get("family") == name
        )
        if models:
            count = len(models)
            return f"waiting for {count} Model(s) of the family to be deleted: {_names(models)}"
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("reason") == "DeletionBlocked" and ready.get("message"):
        return f"waiting: {ready['message']}"
    finalizers = obj["metadata"].get("finalizers") or []
    if finalizers:
        return f"waiting for the operator to finish (finalizer {', '.join(finalizers)})"
    return "waiting for the API server to remove it"


def state(cluster: Cluster, kind: Kind, name: str) -> Deletion:
    found = cluster.find(kind, name)
    reason = None if found is None else blocked_by(cluster, kind, found)
    return Deletion(kind, name, cluster.namespace, reason)


def delete(
    cluster: Cluster,
    kind: Kind,
    name: str,
    output: DataOutput,
    wait: bool,
    timeout: float,
    console: Console | None = None,
) -> Deletion:
    """Request the deletion; report it (a line, or a document with -o yaml|json); with
    `wait`, poll until the object is gone (CliError naming what still holds it when
    `timeout` runs out)."""
    cluster.delete(kind, name)
    current = state(cluster, kind, name)
    if wait and not current.deleted:
        current = _wait_gone(cluster, current, timeout, console)
    if output is DataOutput.table:
        typer.echo(current.line())
    else:
        print_data(current.document(), output)
    return current


def _wait_gone(
    cluster: Cluster, current: Deletion, timeout: float, console: Console | None
) -> Deletion:
    console = console or Console(stderr=True, highlight=False)
    label = resource(current.kind, current.name)
    started = time.monotonic()
    deadline = started + timeout
    with console.status(Text(f"{label}: {current.blocked_by}")) as line:
        while not current.deleted:
            now = time.monotonic()
            if now >= deadline:
                raise CliError(
                    f"timed out after {timeout:g}s waiting for {label} to be deleted "
                    f"({current.blocked_by})"
                )
            line.update(Text(f"{label}: {current.blocked_by} ({now - started:.1f}s)"))
            time.sleep(min(POLL_INTERVAL, deadline - now))
            current = state(cluster, current.kind, current.name)
    return current
