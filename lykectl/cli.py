"""lykectl: a thin CLI over the Lykeion custom resources, and the embedded platform's switch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lykectl import (
    cluster_mode,
    deployments,
    embedded,
    families,
    features,
    models,
    options,
    predict,
    scaffold,
)
from lykectl.errors import ReportingGroup
from lykectl.output import DataOutput, print_data

app = typer.Typer(
    name="lykectl",
    help="Machine Learning as a Service on Kubernetes: families, features, models, deployments.",
    cls=ReportingGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Click's own help layout: it wraps every line to the terminal (80 columns at most)
    # and never cuts an option name or its help short, as Rich's boxed tables do.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(families.app, name="families")
app.add_typer(features.app, name="features")
app.add_typer(models.app, name="models")
app.add_typer(deployments.app, name="deployments")
app.command("predict")(predict.predict)
app.command("init")(scaffold.init)

Workdir = options.Workdir


@app.callback()
def root(
    ctx: typer.Context,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Machine Learning as a Service on Kubernetes: families, features, models, deployments."""
    ctx.obj = options.Globals(namespace=namespace, kubeconfig=kubeconfig)


@app.command("up")
def up(
    workdir: Workdir = embedded.DEFAULT_WORKDIR,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds each start-up stage may take.")
    ] = 120.0,
    output: Annotated[
        DataOutput,
        typer.Option(
            "--output",
            "-o",
            help="table: `export KUBECONFIG=...` on stdout (for eval), the rest on stderr; "
            "yaml/json: the platform's addresses.",
        ),
    ] = DataOutput.table,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Instead: a one-node Kubernetes cluster on this machine (Linux, root) with "
            "the images built from the Dockerfile and the chart installed by helm; the "
            "operator runs in its pod with the kubernetes executor. The first start builds "
            "the node binaries and images (tens of minutes); later ones take 1-2 minutes.",
        ),
    ] = False,
) -> None:
    """Start the embedded platform: etcd, kube-apiserver, the CRDs, MLflow, the operator and
    the Feature API (with --cluster: a one-node cluster with the chart installed)."""
    if cluster:
        _up_cluster(workdir, timeout, output)
        return
    platform, already = embedded.up(workdir, timeout)
    if output is not DataOutput.table:
        print_data(
            {"kubeconfig": str(platform.kubeconfig), "apiServer": platform.api_server,
             "mlflow": platform.mlflow_url, "featureApi": platform.feature_api_url or None,
             "alreadyRunning": already},
            output,
        )  # fmt: skip
        return
    if already:
        typer.echo(f"the embedded platform is already running ({platform.api_server})", err=True)
    else:
        typer.echo(f"the embedded platform is up: API server {platform.api_server}", err=True)
    # The only line on stdout, so that `eval "$(lykectl up)"` works.
    typer.echo(f"export KUBECONFIG={platform.kubeconfig}")
    typer.echo(f"MLflow (model repository): {platform.mlflow_url}", err=True)
    if platform.feature_api_url:
        typer.echo(f"Feature API (GraphQL, catalog): {platform.feature_api_url}", err=True)
    typer.echo(
        f"next: kubectl get lykeion   (kubectl is {platform.kubectl}), or lykectl families list",
        err=True,
    )


@app.command("down")
def down(
    workdir: Workdir = embedded.DEFAULT_WORKDIR,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the data: etcd, runs, kubeconfig, logs.")
    ] = False,
    output: Annotated[
        DataOutput, typer.Option("--output", "-o", help="Output format.")
    ] = DataOutput.table,
) -> None:
    """Stop the embedded platform started by `lykectl up`, and the one-node cluster started
    by `lykectl up --cluster` (torn down, the host restored)."""
    cluster = cluster_mode.down(workdir)
    stopped = embedded.down(workdir, purge)
    if output is not DataOutput.table:
        print_data(
            {"stopped": stopped, "clusterStopped": cluster, "purged": purge,
             "workdir": str(workdir)},
            output,
        )  # fmt: skip
    elif not stopped and not cluster:
        typer.echo(
            f"the embedded platform is not running (no {workdir / embedded.STATE_FILE}) "
            f"and no cluster either (no {workdir / cluster_mode.STATE_FILE})",
            err=True,
        )


def _up_cluster(workdir: Path, timeout: float, output: DataOutput) -> None:
    state, already = cluster_mode.up(workdir, timeout)
    if output is not DataOutput.table:
        print_data(
            {"kubeconfig": state.kubeconfig, "apiServer": state.api_server,
             "namespace": state.namespace, "dataDir": state.data_dir, "alreadyRunning": already},
            output,
        )  # fmt: skip
        return
    typer.echo(
        f"the one-node cluster is {'already running' if already else 'up'}: API server "
        f"{state.api_server}, the chart installed (namespace {cluster_mode.NAMESPACE})",
        err=True,
    )
    # The only line on stdout, so that `eval "$(lykectl up --cluster)"` works.
    typer.echo(f"export KUBECONFIG={state.kubeconfig}")
    typer.echo(
        f"next (namespace {state.namespace}; the data volume is {state.data_dir}):\n"
        "  kubectl apply -f examples/forward/family.yaml -f examples/forward/features.yaml\n"
        "  kubectl apply -f examples/forward/model.yaml -f examples/forward/deployment.yaml\n"
        "  kubectl wait --for=condition=Ready deployments.lykeion.io/forward-default "
        "--timeout=10m\n"
        f"  kubectl get pods,jobs   (kubectl is {state.kubectl}); lykectl down to tear it down",
        err=True,
    )


def main() -> None:
    app()
