"""`lykectl predict`: send entity keys to a family/segment's endpoint, print the answer."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from lykectl import options
from lykectl.errors import CliError
from lykectl.http import call_json, kubeconfig_token
from lykectl.output import DataOutput, print_data, print_rows
from lykeion.api.kinds import DEPLOYMENT


def parse_keys(pairs: Sequence[str]) -> list[dict[str, str]]:
    """`rider_id=r1,r2` (or repeated `--key`) -> one row of keys per value position."""
    columns: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, values = pair.partition("=")
        if not sep or not name or not values:
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE[,VALUE...]", param_hint="'--key'")
        columns.setdefault(name, []).extend(v for v in values.split(",") if v)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise typer.BadParameter("every key needs the same number of values", param_hint="'--key'")
    count = lengths.pop()
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]


def endpoint_of(deployments: Sequence[Mapping[str, Any]], family: str, segment: str) -> str:
    """The serving URL of the family/segment's Deployment, or a one-line reason."""
    mine = [
        d for d in deployments
        if d["spec"]["family"] == family and d["spec"]["segment"] == segment
    ]  # fmt: skip
    if not mine:
        raise CliError(
            f"no Deployment serves {family}/{segment}: "
            f"lykectl models deploy {family} --segment {segment} --version VERSION"
        )
    status = mine[0].get("status") or {}
    url = status.get("endpoint")
    if not url:
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions", []) if c["type"] == "Ready"), {}
        )
        raise CliError(
            f"Deployment {mine[0]['metadata']['name']} has no endpoint yet: "
            f"{ready.get('message') or 'not reconciled'}"
        )
    return str(url)


def predict(
    ctx: typer.Context,
    family: Annotated[str, typer.Argument(help="Model family alias, e.g. forward.")],
    key: Annotated[
        list[str],
        typer.Option(
            "--key", "-k", help="Entity key NAME=VALUE (comma-separated values for a batch)."
        ),
    ],
    segment: Annotated[str, typer.Option("--segment", "-s", help="Segment.")] = "default",
    explain: Annotated[
        bool, typer.Option("--explain", help="Also show the feature values the model received.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Endpoint URL (default: the Deployment's status.endpoint)."),
    ] = None,
    output: Annotated[
        DataOutput, typer.Option("--output", "-o", help="Output format.")
    ] = DataOutput.table,
    namespace: options.Namespace = None,
    kubeconfig: options.Kubeconfig = None,
) -> None:
    """Predict for entity keys: the endpoint looks up the model's features itself.

    Example: lykectl predict forward --segment default --key rider_id=r42
    """
    rows = parse_keys(key)
    if url is None:
        cluster = options.cluster(ctx, namespace, kubeconfig)
        url = endpoint_of(cluster.list(DEPLOYMENT), family, segment)
    target = url.rstrip("/") + "/predict" + ("?explain=features" if explain else "")
    answer, headers = call_json(
        target, {"keys": rows}, "the endpoint", token=kubeconfig_token(kubeconfig)
    )
    served_by = headers.get("x-lykeion-version")
    if output is not DataOutput.table:
        print_data({**answer, "servedBy": served_by}, output)
        return
    features = answer.get("features") or [{} for _ in rows]
    columns = sorted({c for f in features for c in f})
    cells = [
        [
            ",".join(f"{k}={v}" for k, v in row.items()),
            json.dumps(prediction),
            *(json.dumps(f.get(c)) for c in columns),
        ]
        for row, prediction, f in zip(rows, answer["predictions"], features, strict=True)
    ]
    print_rows(["KEYS", "PREDICTION", *(c.upper() for c in columns)], cells)
    typer.echo(
        f"model {answer.get('model')} version {served_by or answer.get('version')}", err=True
    )
