"""lykectl: a thin CLI over the Lykeion custom resources, and the embedded platform's switch."""

from __future__ import annotations

from typing import Annotated

import typer

from lykectl import (
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

app = typer.Typer(
    name="lykectl",
    help="Machine Learning as a Service on Kubernetes: families, features, models, deployments.",
    cls=ReportingGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
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
) -> None:
    """Start the embedded platform: etcd, kube-apiserver, the CRDs, MLflow, the operator and
    the Feature API."""
    platform, already = embedded.up(workdir, timeout)
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
) -> None:
    """Stop the embedded platform started by `lykectl up`."""
    if not embedded.down(workdir, purge):
        typer.echo(
            f"the embedded platform is not running (no {workdir / embedded.STATE_FILE})", err=True
        )


def main() -> None:
    app()
