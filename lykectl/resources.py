"""What every kind's commands share: building objects through the API models, reporting
what was written, and the plain `list`, `get NAME` and `delete NAME` commands."""

# No `from __future__ import annotations`: typer must evaluate the annotations of the
# commands defined inside `add_read_delete_commands`, which refer to its `kind` argument.

from collections.abc import Callable
from typing import Annotated, Any

import typer
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from lykectl import deletion, options
from lykectl.client import AlreadyExists, Cluster, is_conflict, resource
from lykectl.errors import CliError, validation_message
from lykectl.output import DataOutput, Output, show
from lykectl.wait import wait_ready
from lykeion.api.common import ApiModel
from lykeion.api.kinds import Kind


def build_spec(kind: Kind, spec: dict[str, Any], where: str = "") -> ApiModel:
    """The spec parsed by the kind's pydantic model; one-line CliError when it is invalid."""
    try:
        parsed: ApiModel = kind.parse_spec(spec)
    except ValidationError as error:
        raise CliError(f"{where}{validation_message(error, 'spec')}") from None
    return parsed


def object_name(kind: Kind, spec: ApiModel) -> str:
    """The name the kind's name rule demands (e.g. `<family>-<segment>-<version>`)."""
    if kind.name_rule is None:
        raise CliError(f"{kind.kind} names are chosen freely; pass one")
    return str(kind.name_rule.expected(spec.wire()))


def name_from(kind: Kind, **parts: str) -> str:
    """The name of an object from the spec fields of its name rule, without a full spec."""
    if kind.name_rule is None:
        raise CliError(f"{kind.kind} names are chosen freely; pass one")
    return str(kind.name_rule.expected(parts))


def build_object(kind: Kind, name: str, spec: ApiModel, namespace: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = kind.build(name, spec, namespace)
    except ValueError as error:
        raise CliError(str(error)) from None
    return body


def create(cluster: Cluster, kind: Kind, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Create the object; (object, "created"), or (the existing one, "unchanged") when an
    object of that name already has the same spec, so that re-running a command (a demo,
    a script) is not an error. CliError naming the fields when its spec differs."""
    try:
        return cluster.create(body), "created"
    except AlreadyExists as error:
        existing = cluster.find(kind, body["metadata"]["name"])
        if existing is None:  # deleted in between
            return cluster.create(body), "created"
        ours = kind.parse_spec(body["spec"]).wire()
        theirs = kind.parse_spec(existing.get("spec") or {}).wire()
        if ours == theirs:
            return existing, "unchanged"
        fields = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise CliError(
            f"{error} with a different spec (spec.{', spec.'.join(fields)}); delete it first "
            "or choose another name"
        ) from None


def finish(
    cluster: Cluster,
    kind: Kind,
    obj: dict[str, Any],
    verb: str,
    output: Output | None,
    wait: bool,
    timeout: float,
) -> None:
    """After a write: a one-line summary (or the object with -o), then --wait if asked."""
    name = obj["metadata"]["name"]
    if output is None:
        typer.echo(f"{resource(kind, name)} {verb}")
    if wait:
        obj = wait_ready(lambda: cluster.get(kind, name), kind, name, timeout)
    if output is not None:
        show(kind, [obj], output, single=True)


CONFLICT_RETRIES = 5


def count_request(
    cluster: Cluster,
    kind: Kind,
    name: str,
    next_spec: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
) -> int:
    """Increment a request counter of the spec exactly once; returns its new value."""
    return increment(cluster, kind, name, next_spec)[0]


def increment(
    cluster: Cluster,
    kind: Kind,
    name: str,
    next_spec: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
) -> tuple[int, dict[str, Any]]:
    """Increment a request counter of the spec exactly once; its new value and the object
    as the patch left it.

    `next_spec(current object)` gives the new count and the spec patch. The patch carries
    the resourceVersion read, so the API server refuses (409) if someone else wrote in
    between and two concurrent requests are never counted as one; a conflict re-reads.
    """
    for _ in range(CONFLICT_RETRIES):
        current = cluster.get(kind, name)
        count, spec = next_spec(current)
        patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}}
        try:
            patched = cluster.merge_patch(kind, name, {**patch, "spec": spec})
        except ApiException as error:
            if is_conflict(error):
                continue
            raise
        return count, patched
    raise CliError(f"{kind.kind} {name} kept changing; gave up after {CONFLICT_RETRIES} conflicts")


def request(
    cluster: Cluster,
    kind: Kind,
    name: str,
    what: str,
    next_spec: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
    output: Output | None,
    wait: bool,
    timeout: float,
) -> int:
    """Count one more `what` request (`training`, `backfill`) and report it as `finish`
    reports a write: a line, or the object with -o (once Ready with --wait)."""
    count, patched = increment(cluster, kind, name, next_spec)
    finish(cluster, kind, patched, f"{what} requested (request #{count})", output, wait, timeout)
    return count


def add_read_delete_commands(app: typer.Typer, kind: Kind) -> None:
    """`list`, `get NAME` and `delete NAME` for a kind addressed by its object name."""

    @app.command("list", help=f"List {kind.kind} objects.")
    def list_objects(
        ctx: typer.Context,
        output: options.Format = Output.table,
        all_namespaces: options.AllNamespaces = False,
        namespace: options.Namespace = None,
        kubeconfig: options.Kubeconfig = None,
    ) -> None:
        cluster = options.cluster(ctx, namespace, kubeconfig)
        items = cluster.list(kind, all_namespaces=all_namespaces)
        show(kind, items, output, all_namespaces=all_namespaces, namespace=cluster.namespace)

    @app.command("get", help=f"Show one {kind.kind}.")
    def get_object(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"Name of the {kind.kind}.")],
        output: options.Format = Output.table,
        namespace: options.Namespace = None,
        kubeconfig: options.Kubeconfig = None,
    ) -> None:
        cluster = options.cluster(ctx, namespace, kubeconfig)
        show(kind, [cluster.get(kind, name)], output, single=True)

    @app.command(
        "delete",
        help=f"Delete one {kind.kind}: says whether it is gone or what still holds it.",
    )
    def delete_object(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help=f"Name of the {kind.kind}.")],
        output: options.DataFormat = DataOutput.table,
        wait: options.WaitDeleted = False,
        timeout: options.Timeout = 120.0,
        namespace: options.Namespace = None,
        kubeconfig: options.Kubeconfig = None,
    ) -> None:
        cluster = options.cluster(ctx, namespace, kubeconfig)
        deletion.delete(cluster, kind, name, output, wait, timeout)
