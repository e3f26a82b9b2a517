"""Options shared by many commands, and the cluster they select."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from lykectl.client import DEFAULT_NAMESPACE, Cluster, context_namespace, default_kubeconfig
from lykectl.embedded import DEFAULT_WORKDIR as DEFAULT_WORKDIR
from lykectl.output import DataOutput, Output

KUBECONFIG_HELP = (
    "Kubeconfig to use (default: $KUBECONFIG, else ~/.lykeion/kubeconfig if it exists, "
    "else ~/.kube/config)."
)

Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Namespace (default: the global --namespace, else the kubeconfig context's, "
        "else default).",
        show_default=False,
    ),
]
Kubeconfig = Annotated[
    str | None, typer.Option("--kubeconfig", help=KUBECONFIG_HELP, show_default=False)
]
Format = Annotated[Output, typer.Option("--output", "-o", help="Output format.")]
CreatedFormat = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="Print the object in this format instead of a one-line summary.",
        show_default=False,
    ),
]
AllNamespaces = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait", help="Wait until the Ready condition is True (exit 1 if it fails for good)."
    ),
]
Timeout = Annotated[float, typer.Option("--timeout", min=0, help="Seconds --wait waits at most.")]
DataFormat = Annotated[DataOutput, typer.Option("--output", "-o", help="Output format.")]
WaitDeleted = Annotated[
    bool,
    typer.Option(
        "--wait", help="Wait until the object is gone (exit 1 if --timeout runs out first)."
    ),
]
Workdir = Annotated[
    Path,
    typer.Option(
        envvar="LYKEION_HOME", help="Where the embedded platform keeps its state, data and logs."
    ),
]


@dataclass
class Globals:
    """The root command's --namespace and --kubeconfig, overridable per command."""

    namespace: str | None = None
    kubeconfig: str | None = None


def cluster(ctx: typer.Context, namespace: str | None, kubeconfig: str | None) -> Cluster:
    """The cluster a command talks to (no connection is made until the first call)."""
    root = ctx.find_root().obj
    defaults = root if isinstance(root, Globals) else Globals()
    path = kubeconfig or defaults.kubeconfig or default_kubeconfig()
    return Cluster(
        path, namespace or defaults.namespace or context_namespace(path) or DEFAULT_NAMESPACE
    )
