"""`lykectl families`: ModelFamily objects."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lykectl import options
from lykectl.arguments import split_list
from lykectl.resources import (
    add_read_delete_commands,
    build_object,
    build_spec,
    create,
    finish,
)
from lykeion.api.kinds import MODEL_FAMILY

app = typer.Typer(
    help="ModelFamily: groups the models of one business problem.", no_args_is_help=True
)


def family_spec(alias: str, name: str, description: str, authors: list[str]) -> dict[str, Any]:
    return {
        "alias": alias,
        "displayName": name,
        "description": description,
        "authors": split_list(authors),
    }


@app.command("create")
def create_family(
    ctx: typer.Context,
    alias: Annotated[
        str, typer.Option(help="Short DNS-label name, used in model names; also the object name.")
    ],
    name: Annotated[str, typer.Option("--name", help="Human name shown in listings.")],
    description: Annotated[str, typer.Option(help="What the models of this family predict.")],
    authors: Annotated[
        list[str], typer.Option("--authors", help="E-mail addresses, comma-separated or repeated.")
    ],
    output: options.CreatedFormat = None,
    wait: options.Wait = False,
    timeout: options.Timeout = 120.0,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Create a ModelFamily."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    spec = build_spec(MODEL_FAMILY, family_spec(alias, name, description, authors))
    created, verb = create(
        cluster, MODEL_FAMILY, build_object(MODEL_FAMILY, alias, spec, cluster.namespace)
    )
    finish(cluster, MODEL_FAMILY, created, verb, output, wait, timeout)


add_read_delete_commands(app, MODEL_FAMILY)
