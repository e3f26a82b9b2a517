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
) -> None:
    """Start the embedded platform: etcd, kube-apiserver, the CRDs, MLflow, the operator and
    the Feature API."""
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
    """Stop the embedded platform started by `lykectl up`."""
    stopped = embedded.down(workdir, purge)
    if output is not DataOutput.table:
        print_data({"stopped": stopped, "purged": purge, "workdir": str(workdir)}, output)
    elif not stopped:
        typer.echo(
            f"the embedded platform is not running (no {workdir / embedded.STATE_FILE})", err=True
        )


def main() -> None:
    app()
