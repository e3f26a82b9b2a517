"""`lykectl deployments`: the prediction endpoints (created by `lykectl models deploy`)."""

from __future__ import annotations

import typer

from lykectl.resources import add_read_delete_commands
from lykeion.api.kinds import DEPLOYMENT

app = typer.Typer(
    help="Deployment: which versions of a family/segment serve traffic, and how.",
    no_args_is_help=True,
)

add_read_delete_commands(app, DEPLOYMENT)
