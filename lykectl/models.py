"""`lykectl models`: Model versions, their trainings, and deploying them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Annotated, Any

import typer
from kubernetes.client.exceptions import ApiException

from lykectl import deletion, options, training_logs
from lykectl.arguments import parse_params, split_list
from lykectl.client import Cluster, is_conflict
from lykectl.errors import CliError
from lykectl.output import DataOutput, Output, print_data, show
from lykectl.resources import (
    build_object,
    build_spec,
    create,
    finish,
    name_from,
    object_name,
    request,
)
from lykectl.traffic import next_versions
from lykectl.wait import wait_ready
from lykeion.api.kinds import DEPLOYMENT, MODEL
from lykeion.rollouts.plan import PROMOTE

app = typer.Typer(
    help="Model: one version of a family/segment; train it and deploy it.", no_args_is_help=True
)

# The traffic split a Deployment had before lykectl last changed it, for `models rollback`.
PREVIOUS_VERSIONS = "lykectl.lykeion.io/previous-versions"
CONFLICT_RETRIES = 5


class Backend(StrEnum):
    lykeion = "lykeion"
    seldon = "seldon"
    kserve = "kserve"


Family = Annotated[str, typer.Argument(help="Alias of the ModelFamily.")]
Segment = Annotated[str, typer.Option(help="Population the model serves.")]
Version = Annotated[str, typer.Option(help="Model version, e.g. 1.0.")]


def model_spec(
    *,
    family: str,
    segment: str,
    version: str,
    description: str,
    source_url: str,
    entry_point: str,
    parameters: Mapping[str, str],
    input_features: list[str],
    labels_path: str | None = None,
    labels_format: str | None = None,
    timestamp_column: str | None = None,
    target: str | None = None,
    metric: str | None = None,
    threshold: float | None = None,
    higher_is_better: bool = True,
    train: bool = False,
    ssh_secret: str | None = None,
) -> dict[str, Any]:
    """A Model spec on the wire (camelCase), from the command-line values.

    Labels and the gate are overrides: left out, the training reads them from the
    project's `lykeion.yaml` at the pinned revision. Raises CliError when an override is
    half given (a labels path without its columns, a metric without its threshold).
    """
    training: dict[str, Any] = {"requests": 1 if train else 0}
    labels_given = {
        "--labels-path": labels_path,
        "--labels-timestamp-column": timestamp_column,
        "--target": target,
    }
    if any(v is not None for v in labels_given.values()):
        missing = [flag for flag, value in labels_given.items() if value is None]
        if missing or labels_path is None:
            raise CliError(
                f"labels override incomplete: also pass {', '.join(missing)} "
                "(or none of them, to use the project's lykeion.yaml)"
            )
        fmt = labels_format or ("csv" if labels_path.lower().endswith(".csv") else "parquet")
        training["labels"] = {
            "file": {"path": labels_path, "format": fmt},
            "timestampColumn": timestamp_column,
            "target": target,
        }
    source: dict[str, Any] = {
        "url": source_url,
        "entryPoint": entry_point,
        "parameters": dict(parameters),
    }
    if ssh_secret is not None:
        source["sshSecret"] = ssh_secret
    spec: dict[str, Any] = {
        "family": family,
        "segment": segment,
        "version": version,
        "description": description,
        "source": source,
        "inputFeatures": split_list(input_features),
        "training": training,
    }
    if (metric is None) != (threshold is None):
        flag = "--threshold" if threshold is None else "--metric"
        raise CliError(
            f"gate override incomplete: also pass {flag} (or neither, to use the project's "
            "lykeion.yaml)"
        )
    if metric is not None:
        spec["evaluation"] = {
            "metric": metric,
            "threshold": threshold,
            "higherIsBetter": higher_is_better,
        }
    return spec


def deployment_spec(
    current: Mapping[str, Any] | None,
    family: str,
    segment: str,
    versions: list[dict[str, Any]],
    backend: str | None = None,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The Deployment spec serving `versions`; other fields kept unless given."""
    spec = {**(current or {}), "family": family, "segment": segment, "versions": versions}
    if backend is not None:
        spec["backend"] = backend
    if replicas is not None:
        spec["replicas"] = replicas
    # A version that goes live stops being the shadow (the API forbids both at once).
    if spec.get("shadow") in {v["version"] for v in versions}:
        del spec["shadow"]
    return spec


def _split(versions: list[dict[str, Any]]) -> str:
    return ", ".join(f"{v['version']}={v['traffic']}%" for v in versions)


@app.command("create")
def create_model(
    ctx: typer.Context,
    family: Family,
    version: Version,
    description: Annotated[str, typer.Option(help="What this version changes.")],
    source_url: Annotated[
        str, typer.Option(help="MLflow project as <git-url>#<subdir>@<40-hex SHA> or file://...")
    ],
    input_features: Annotated[
        list[str],
        typer.Option(help="Features as entity.feature[:type], comma-separated or repeated."),
    ],
    segment: Segment = "default",
    labels_path: Annotated[
        str | None,
        typer.Option(
            help="Override: Parquet or CSV file of labelled examples (default: the project's "
            "lykeion.yaml).",
            show_default=False,
        ),
    ] = None,
    labels_timestamp_column: Annotated[
        str | None,
        typer.Option(help="Override: event-time column of the labels.", show_default=False),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Override: label column holding the value to predict.", show_default=False
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Override: metric of the evaluation gate, e.g. roc_auc (default: the "
            "project's lykeion.yaml).",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Override: value the metric must reach.", show_default=False),
    ] = None,
    lower_is_better: Annotated[
        bool, typer.Option("--lower-is-better", help="The metric must stay below the threshold.")
    ] = False,
    entry_point: Annotated[str, typer.Option(help="MLflow project entry point.")] = "main",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Entry-point parameter key=value; repeat.")
    ] = None,
    labels_format: Annotated[
        str | None,
        typer.Option(help="parquet or csv (default: from the file extension).", show_default=False),
    ] = None,
    train: Annotated[bool, typer.Option("--train", help="Request a training right away.")] = False,
    ssh_secret: Annotated[
        str | None,
        typer.Option(
            help="Secret with ssh-privatekey and known_hosts for an SSH git source (Kubernetes "
            "executor; default: the chart's, else the environment's SSH configuration).",
            show_default=False,
        ),
    ] = None,
    output: options.CreatedFormat = None,
    wait: options.Wait = False,
    timeout: options.Timeout = 120.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Create a Model version (named <family>-<segment>-<version>).

    Labels, target and gate come from the project's lykeion.yaml at the pinned revision;
    the --labels-*, --target, --metric and --threshold options override it."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    spec = build_spec(
        MODEL,
        model_spec(
            family=family,
            segment=segment,
            version=version,
            description=description,
            source_url=source_url,
            entry_point=entry_point,
            parameters=parse_params(param or []),
            input_features=input_features,
            labels_path=labels_path,
            labels_format=labels_format,
            timestamp_column=labels_timestamp_column,
            target=target,
            metric=metric,
            threshold=threshold,
            higher_is_better=not lower_is_better,
            train=train,
            ssh_secret=ssh_secret,
        ),
    )
    body = build_object(MODEL, object_name(MODEL, spec), spec, cluster.namespace)
    finish(cluster, MODEL, *create(cluster, MODEL, body), output, wait, timeout)


@app.command("list")
def list_models(
    ctx: typer.Context,
    family: Annotated[str | None, typer.Argument(help="Only this family.")] = None,
    segment: Annotated[str | None, typer.Option(help="Only this segment.")] = None,
    output: options.Format = Output.table,
    all_namespaces: options.AllNamespaces = False,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """List Models, optionally of one family (and segment)."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    items = [
        item
        for item in cluster.list(MODEL, all_namespaces=all_namespaces)
        if family in (None, item.get("spec", {}).get("family"))
        and segment in (None, item.get("spec", {}).get("segment"))
    ]
    show(MODEL, items, output, all_namespaces=all_namespaces, namespace=cluster.namespace)


@app.command("get")
def get_model(
    ctx: typer.Context,
    family: Family,
    version: Version,
    segment: Segment = "default",
    output: options.Format = Output.table,
    wait: options.Wait = False,
    timeout: options.Timeout = 600.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Show one Model version (with --wait: once it is Ready, e.g. trained and evaluated)."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    name = name_from(MODEL, family=family, segment=segment, version=version)
    obj = (
        wait_ready(lambda: cluster.get(MODEL, name), MODEL, name, timeout)
        if wait
        else cluster.get(MODEL, name)
    )
    show(MODEL, [obj], output, single=True)


@app.command("delete")
def delete_model(
    ctx: typer.Context,
    family: Family,
    version: Version,
    segment: Segment = "default",
    output: options.DataFormat = DataOutput.table,
    wait: options.WaitDeleted = False,
    timeout: options.Timeout = 120.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Delete one Model version: says whether it is gone or what still holds it."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    name = name_from(MODEL, family=family, segment=segment, version=version)
    deletion.delete(cluster, MODEL, name, output, wait, timeout)


@app.command("train")
def train_model(
    ctx: typer.Context,
    family: Family,
    version: Version,
    segment: Segment = "default",
    output: options.CreatedFormat = None,
    wait: options.Wait = False,
    timeout: options.Timeout = 120.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Request one more training of a Model version (increments spec.training.requests)."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    name = name_from(MODEL, family=family, segment=segment, version=version)

    def more(current: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        spec = current["spec"]
        training = spec.get("training") or {}
        requests = int(training.get("requests", 0)) + 1
        build_spec(MODEL, {**spec, "training": {**training, "requests": requests}})
        return requests, {"training": {"requests": requests}}

    request(cluster, MODEL, name, "training", more, output, wait, timeout)


@app.command("logs")
def model_logs(
    ctx: typer.Context,
    family: Family,
    version: Version,
    segment: Segment = "default",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print new lines until the training ends.")
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option(min=0, help="Only the last N lines (default: all).", show_default=False),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds --follow follows at most.")
    ] = 600.0,
    output: Annotated[
        DataOutput,
        typer.Option(
            "--output",
            "-o",
            help="table: the log as it is written; yaml/json: {training, running, lines} "
            "(with --follow, once the training ends).",
        ),
    ] = DataOutput.table,
    workdir: options.Workdir = options.DEFAULT_WORKDIR,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Print the log of a Model version's current (else last) training (embedded platform)."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    name = name_from(MODEL, family=family, segment=segment, version=version)
    log = training_logs.training_log(
        workdir.expanduser(), cluster.namespace, cluster.get(MODEL, name)
    )
    collected: list[str] = []

    def emit(text: str) -> None:
        if output is DataOutput.table:
            typer.echo(text, nl=False)
        else:
            collected.append(text)

    if not follow:
        training_logs.show(log, tail, emit)
    else:
        training_logs.follow(
            log,
            tail,
            lambda: training_logs.still_running(cluster.get(MODEL, name), log.training),
            emit,
            timeout,
        )
    if output is not DataOutput.table:
        document = {"training": log.training, "running": log.running and not follow,
                    "lines": "".join(collected).splitlines()}  # fmt: skip
        print_data(document, output)


def _write_deployment(
    cluster: Cluster,
    family: str,
    segment: str,
    desired: Callable[[dict[str, Any] | None], dict[str, Any]],
) -> tuple[dict[str, Any], str]:
    """Create or merge-patch the family/segment's Deployment to `desired(current object)`.

    The spec is parsed by the API model first, so an invalid split never reaches the server;
    the patch carries the resourceVersion it was computed from and is recomputed on a 409.
    """
    name = name_from(DEPLOYMENT, family=family, segment=segment)
    for _ in range(CONFLICT_RETRIES):
        existing = cluster.find(DEPLOYMENT, name)
        spec = build_spec(DEPLOYMENT, desired(existing))
        if existing is None:
            body = build_object(DEPLOYMENT, name, spec, cluster.namespace)
            return cluster.create(body), "created"
        current = existing["spec"]
        wire = spec.wire()
        metadata: dict[str, Any] = {"resourceVersion": existing["metadata"]["resourceVersion"]}
        if wire["versions"] != current.get("versions"):
            previous = json.dumps(current.get("versions", []), separators=(",", ":"))
            metadata["annotations"] = {PREVIOUS_VERSIONS: previous}
        removed = {key: None for key in current if key not in wire}
        try:
            patched = cluster.merge_patch(
                DEPLOYMENT, name, {"metadata": metadata, "spec": {**removed, **wire}}
            )
        except ApiException as error:
            if is_conflict(error):
                continue
            raise
        return patched, "configured"
    raise CliError(f"Deployment {name} kept changing; gave up after {CONFLICT_RETRIES} conflicts")


@app.command("deploy")
def deploy_model(
    ctx: typer.Context,
    family: Family,
    version: Version,
    segment: Segment = "default",
    traffic: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100,
            help="Canary: percent for this version; the one version serving now keeps the rest. "
            "Without it, this version gets all traffic.",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        Backend | None,
        typer.Option(help="Serving system (default: unchanged, else lykeion).", show_default=False),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=0, max=100, help="Replicas (default: unchanged, else 1).", show_default=False
        ),
    ] = None,
    output: options.CreatedFormat = None,
    wait: options.Wait = False,
    timeout: options.Timeout = 120.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Serve a Model version from the Deployment <family>-<segment> (created if needed)."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    # Fails with "Model ... not found in namespace ..." before touching the Deployment.
    cluster.get(MODEL, name_from(MODEL, family=family, segment=segment, version=version))

    def desired(existing: dict[str, Any] | None) -> dict[str, Any]:
        current = (existing or {}).get("spec")
        versions = next_versions((current or {}).get("versions", []), version, traffic)
        chosen = backend.value if backend is not None else None
        return deployment_spec(current, family, segment, versions, chosen, replicas)

    deployment, verb = _write_deployment(cluster, family, segment, desired)
    finish(
        cluster,
        DEPLOYMENT,
        deployment,
        f"{verb}: {_split(deployment['spec']['versions'])}",
        output,
        wait,
        timeout,
    )


@app.command("promote")
def promote_model(
    ctx: typer.Context,
    family: Family,
    version: Version,
    segment: Segment = "default",
    output: options.CreatedFormat = None,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Promote the canary of a rollout at once: it gets all traffic without further analysis.

    Sets the annotation lykeion.io/promote=<version>@<the rollout's startedAt>, an edit of
    metadata (spec stays as GitOps declared it; the promoted end state is the one spec names).
    The annotation names the rollout, so it never promotes a later canary of that version.
    """
    cluster = options.cluster(ctx, namespace, kubeconfig)
    name = name_from(DEPLOYMENT, family=family, segment=segment)
    deployment = cluster.get(DEPLOYMENT, name)
    if not (deployment.get("spec") or {}).get("rollout"):
        raise CliError(
            f"Deployment {name} has no spec.rollout: use `lykectl models deploy` to move traffic"
        )
    state = (deployment.get("status") or {}).get("rollout") or {}
    canary = state.get("canary")
    if canary != version:
        now = f"the canary is {canary} ({state.get('phase')})" if canary else "there is no canary"
        raise CliError(f"cannot promote {version} in Deployment {name}: {now}")
    token = f"{canary}@{state.get('startedAt')}"
    patched = cluster.merge_patch(
        DEPLOYMENT,
        name,
        {
            "metadata": {
                "annotations": {PROMOTE: token},
                "resourceVersion": deployment["metadata"]["resourceVersion"],
            }
        },
    )
    if output is None:
        typer.echo(f"promoting {version} in Deployment {name} (was {state.get('weight', 0)}%)")
    else:
        show(DEPLOYMENT, [patched], output, single=True)


@app.command("rollback")
def rollback_model(
    ctx: typer.Context,
    family: Family,
    segment: Segment = "default",
    output: options.CreatedFormat = None,
    wait: options.Wait = False,
    timeout: options.Timeout = 120.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Restore the traffic split the Deployment had before the last `models deploy`."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    name = name_from(DEPLOYMENT, family=family, segment=segment)

    def desired(existing: dict[str, Any] | None) -> dict[str, Any]:
        if existing is None:
            raise CliError(f"Deployment {name} not found in namespace {cluster.namespace}")
        recorded = existing["metadata"].get("annotations", {}).get(PREVIOUS_VERSIONS)
        try:
            previous = json.loads(recorded) if recorded else []
        except ValueError:
            previous = []
        if not previous:
            raise CliError(f"Deployment {name} has no earlier traffic split recorded by lykectl")
        return deployment_spec(existing["spec"], family, segment, previous)

    deployment, _ = _write_deployment(cluster, family, segment, desired)
    finish(
        cluster,
        DEPLOYMENT,
        deployment,
        f"rolled back: {_split(deployment['spec']['versions'])}",
        output,
        wait,
        timeout,
    )
