"""`lykectl features`: FeatureManifest objects, applied from YAML files; reading served
values and searching the catalog through the Feature API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from lykectl import feature_api, options
from lykectl.arguments import split_list
from lykectl.errors import CliError
from lykectl.output import DataOutput, print_data, print_rows
from lykectl.resources import (
    add_read_delete_commands,
    build_object,
    build_spec,
    finish,
    request,
)
from lykeion.api.kinds import FEATURE_MANIFEST, kind_of

app = typer.Typer(
    help="FeatureManifest: an entity's features, their source and schedule.",
    no_args_is_help=True,
)

KEPT_METADATA = ("labels", "annotations")


def load_manifests(text: str, source: str, namespace: str) -> list[dict[str, Any]]:
    """The FeatureManifests of a YAML stream, each checked by the API models before sending."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise CliError(f"{source}: invalid YAML: {' '.join(str(error).split())}") from None
    if not documents:
        raise CliError(f"{source}: no YAML documents")
    manifests = []
    for number, doc in enumerate(documents, start=1):
        where = f"{source} document {number}"
        if not isinstance(doc, dict):
            raise CliError(f"{where}: expected a mapping, got {type(doc).__name__}")
        try:
            kind = kind_of(doc)
        except ValueError as error:
            raise CliError(f"{where}: {error}") from None
        if kind is not FEATURE_MANIFEST:
            raise CliError(f"{where}: is a {kind.kind}; `features apply` takes FeatureManifests")
        metadata = doc.get("metadata") or {}
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise CliError(f"{where}: metadata.name is required")
        spec = build_spec(FEATURE_MANIFEST, doc.get("spec") or {}, where=f"{where} ({name}): ")
        body = build_object(FEATURE_MANIFEST, name, spec, metadata.get("namespace") or namespace)
        body["metadata"].update({k: metadata[k] for k in KEPT_METADATA if metadata.get(k)})
        manifests.append(body)
    return manifests


def _read(path: Path) -> tuple[str, str]:
    if str(path) == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return path.read_text(), str(path)
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from None


@app.command("apply")
def apply_features(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Option(
            "--filename", "-f", help="YAML file of one or more FeatureManifests ('-' for stdin)."
        ),
    ],
    force_conflicts: Annotated[
        bool, typer.Option(help="Take over fields another field manager owns.")
    ] = False,
    output: options.CreatedFormat = None,
    wait: options.Wait = False,
    timeout: options.Timeout = 120.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Server-side apply FeatureManifests (field manager `lykectl`)."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    # Validate every document of every file before the first one is sent.
    manifests = [m for path in files for m in load_manifests(*_read(path), cluster.namespace)]
    applied = [cluster.apply(m, force_conflicts=force_conflicts) for m in manifests]
    # Report (and wait) once everything is sent, so that manifests converge together.
    for obj in applied:
        target = cluster.in_namespace(obj["metadata"]["namespace"])
        finish(target, FEATURE_MANIFEST, obj, "applied", output, wait, timeout)


ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        help="Feature API base URL (default: the one `lykectl up` recorded in the workdir).",
        show_default=False,
    ),
]
DataFormat = Annotated[DataOutput, typer.Option("--output", "-o", help="Output format.")]


@app.command("backfill")
def backfill(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="FeatureManifest name, e.g. rider-activity.")],
    output: options.CreatedFormat = None,
    wait: options.Wait = False,
    timeout: options.Timeout = 600.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Rebuild both stores from the whole source (increments spec.backfillRequests)."""
    cluster = options.cluster(ctx, namespace, kubeconfig)

    def more(current: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        requests = int(current["spec"].get("backfillRequests", 0)) + 1
        return requests, {"backfillRequests": requests}

    request(cluster, FEATURE_MANIFEST, name, "backfill", more, output, wait, timeout)


@app.command("read")
def read_features(
    ctx: typer.Context,
    entity: Annotated[str, typer.Argument(help="Entity name, e.g. rider.")],
    keys: Annotated[
        list[str], typer.Option("--keys", help="Entity keys, comma-separated or repeated.")
    ],
    features: Annotated[
        list[str] | None,
        typer.Option(
            "--features",
            help="Feature names, comma-separated or repeated (default: every feature the "
            "namespace's FeatureManifests define for the entity).",
            show_default=False,
        ),
    ] = None,
    api_url: ApiUrl = None,
    output: DataFormat = DataOutput.table,
    workdir: options.Workdir = options.DEFAULT_WORKDIR,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Read served feature values of some keys from the Feature API (online store)."""
    wanted_keys = split_list(keys)
    if not wanted_keys:
        raise typer.BadParameter("give at least one key", param_hint="'--keys'")
    names = split_list(features or [])
    if features is not None and not names:
        raise typer.BadParameter("give at least one feature name", param_hint="'--features'")
    base = feature_api.api_url(api_url, workdir)
    if not names:
        cluster = options.cluster(ctx, namespace, kubeconfig)
        names = feature_api.feature_names(cluster.list(FEATURE_MANIFEST), entity)
        if not names:
            raise CliError(
                f"no FeatureManifest in namespace {cluster.namespace} defines entity {entity}"
            )
    rows = feature_api.read_features(base, entity, wanted_keys, names)
    entries = feature_api.by_key(wanted_keys, rows)
    if output is DataOutput.table:
        print_rows(*feature_api.feature_rows(entries, names))
    else:
        print_data(entries, output)


@app.command("search")
def search_features(
    query: Annotated[str, typer.Argument(help="Words to search, e.g. 'rider age' or tag:pii.")],
    api_url: ApiUrl = None,
    output: DataFormat = DataOutput.table,
    workdir: options.Workdir = options.DEFAULT_WORKDIR,
) -> None:
    """Search the feature catalog: names, descriptions, owners, tags."""
    if not query.strip():
        raise typer.BadParameter("give words to search", param_hint="'QUERY'")
    results = feature_api.search_catalog(feature_api.api_url(api_url, workdir), query)
    if output is not DataOutput.table:
        print_data(results, output)
    elif not results:
        typer.echo(f"No features match {query!r}.", err=True)
    else:
        print_rows(*feature_api.search_rows(results))


add_read_delete_commands(app, FEATURE_MANIFEST)
