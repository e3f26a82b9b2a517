"""`lykectl deployments`: the prediction endpoints (created by `lykectl models deploy`), and
the state of their rollouts (`status`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lykectl import options
from lykectl.output import DataOutput, print_data, print_rows
from lykectl.resources import add_read_delete_commands
from lykeion.api.kinds import DEPLOYMENT

app = typer.Typer(
    help="Deployment: which versions of a family/segment serve traffic, and how.",
    no_args_is_help=True,
)

add_read_delete_commands(app, DEPLOYMENT)


def rollout_document(deployment: dict[str, Any]) -> dict[str, Any]:
    """What `deployments status` shows, as plain data: the traffic in effect and, with a
    rollout, its phase, versions, step, each check's value against its threshold and the
    recent decisions (oldest first). Pure: the object as the API server returns it."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    plan = spec.get("rollout") or {}
    state = status.get("rollout") or {}
    ready = next(
        (c for c in status.get("conditions", []) if c.get("type") == "Ready"), {"status": "Unknown"}
    )
    document: dict[str, Any] = {
        "name": deployment.get("metadata", {}).get("name", ""),
        "ready": ready.get("status"),
        "reason": ready.get("reason", ""),
        "traffic": [
            {"version": t["version"], "traffic": t.get("traffic", 0)}
            for t in status.get("traffic", [])
        ],
    }
    if not plan:
        return {**document, "rollout": False}
    steps = plan.get("steps", [])
    return {
        **document,
        "rollout": True,
        "phase": state.get("phase", "Pending"),
        "stable": state.get("stable"),
        "canary": state.get("canary"),
        "weight": state.get("weight", 0),
        "step": state.get("step", 0) + 1 if state.get("canary") else None,
        "steps": steps,
        "interval": plan.get("interval"),
        "paused": bool(plan.get("paused")),
        "stepStartedAt": state.get("stepStartedAt"),
        "checks": state.get("checks", []),
        "decisions": state.get("decisions", []),
    }


def _value(check: dict[str, Any]) -> str:
    value = check.get("value")
    if value is None:
        return "unbounded" if check.get("result") == "Fail" else "-"
    return f"{value:.4g}"


def _print_table(document: dict[str, Any]) -> None:
    split = ", ".join(f"{t['version']} {t['traffic']}%" for t in document["traffic"]) or "none"
    typer.echo(f"Deployment {document['name']}: Ready={document['ready']} ({document['reason']})")
    typer.echo(f"Traffic in effect: {split}")
    if not document["rollout"]:
        typer.echo("No rollout (spec.rollout is not set).")
        return
    steps = ", ".join(f"{s}%" for s in document["steps"])
    if document["canary"]:
        typer.echo(
            f"Rollout: {document['phase']}, {document['stable']} -> {document['canary']} at "
            f"{document['weight']}% (step {document['step']} of steps {steps}; "
            f"interval {document['interval']})"
        )
        if document["stepStartedAt"]:
            typer.echo(f"Step analysed since {document['stepStartedAt']}")
    else:
        typer.echo(f"Rollout: {document['phase']}, {document['stable']} serves all (steps {steps})")
    if document["checks"]:
        typer.echo("")
        print_rows(
            ["CHECK", "VALUE", "THRESHOLD", "RESULT", "DETAIL"],
            [
                [
                    c["name"],
                    _value(c),
                    f"{'>=' if c['name'] == 'requests' or c.get('atLeast') else '<='} "
                    f"{c['threshold']:.4g}",
                    c["result"],
                    c.get("message", ""),
                ]
                for c in document["checks"]
            ],
        )
    if document["decisions"]:
        typer.echo("")
        print_rows(
            ["TIME", "ACTION", "CANARY", "WEIGHT", "REASON", "MESSAGE"],
            [
                [d["time"], d["action"], d["canary"], f"{d['weight']}%", d["reason"], d["message"]]
                for d in document["decisions"]
            ],
        )


@app.command("status")
def deployment_status(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Deployment name (<family>-<segment>).")],
    output: Annotated[
        DataOutput, typer.Option("--output", "-o", help="Output format.")
    ] = DataOutput.table,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """The traffic in effect and the rollout: step, each check's value against its
    threshold, and the recent decisions."""
    cluster = options.cluster(ctx, namespace, kubeconfig)
    document = rollout_document(cluster.get(DEPLOYMENT, name))
    if output is DataOutput.table:
        _print_table(document)
    else:
        print_data(document, output)
