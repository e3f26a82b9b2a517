"""Run one materialization of a FeatureManifest (what the executors launch).

    python -m lykeion.features.run --manifest manifest.json \\
        --offline duckdb:///data/offline.duckdb --online sqlite:///data/online.db \\
        [--start ISO] [--end ISO] [--engine beam|duckdb] [--data-root DIR] \\
        [--generation N] [--drop-generations 1,2] \\
        [--result result.json] [-- beam pipeline options, e.g. --runner=FlinkRunner]
    python -m lykeion.features.run --manifest-json '{...}' --offline URI --online URI \\
        --drop-generations 1,2 --drop-only

`manifest.json` is the FeatureManifest object (metadata with uid + spec). The run writes
the tables of store generation N (`FeatureView.table`), after dropping those of the
generations given. An incremental run (`--start`) also counts late rows (`lateness.py`).
The result (rows read, written, bad, late, duration, success) is written as JSON; the exit
code is 0 only on success.

`--drop-only` (the finalizer of a deleted FeatureManifest) drops the tables of the
generations given from both stores and writes nothing: its result is `succeeded`,
`message`, `dropped` and `tables_left` (the `FeatureView.table` names of the generations
not fully dropped when a store failed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lykeion.features.compile import Range
from lykeion.features.lateness import bigquery_project, count_late_rows
from lykeion.features.materialize import RunResult, materialize_duckdb
from lykeion.features.view import FeatureView
from lykeion.stores import open_offline, open_online

if TYPE_CHECKING:
    from lykeion.api.featuremanifest import FeatureManifestSpec


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a timezone")
    return moment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lykeion.features.run",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="file holding the FeatureManifest as JSON")
    source.add_argument("--manifest-json", help="the FeatureManifest object as JSON text")
    parser.add_argument("--offline", required=True, help="offline store URI")
    parser.add_argument("--online", required=True, help="online store URI")
    parser.add_argument("--start", help="exclusive start of the event-time range (ISO 8601)")
    parser.add_argument("--end", help="inclusive end of the event-time range (ISO 8601)")
    parser.add_argument(
        "--generation",
        type=int,
        default=None,
        help="store generation to write (default: the manifest status' generation in effect)",
    )
    parser.add_argument(
        "--drop-generations",
        default="",
        help="comma-separated store generations whose tables to drop before writing",
    )
    parser.add_argument(
        "--drop-only",
        action="store_true",
        help="only drop the tables of --drop-generations (a deleted manifest's finalizer)",
    )
    parser.add_argument("--engine", choices=["beam", "duckdb"], default="beam")
    parser.add_argument("--data-root", help="directory relative file sources are read from")
    parser.add_argument(
        "--result",
        type=Path,
        # On Kubernetes the executor points this at the container's termination message.
        default=Path(os.environ.get("LYKEION_RESULT_PATH", "result.json")),
    )
    args, beam_args = parser.parse_known_args(argv)
    beam_args = [a for a in beam_args if a != "--"]

    body = json.loads(args.manifest.read_text() if args.manifest else args.manifest_json)
    view = FeatureView.from_body(body, args.generation)
    if args.drop_only:
        drops = [int(g) for g in args.drop_generations.split(",") if g.strip()]
        report = drop_only(view, drops, args.offline, args.online)
        args.result.write_text(json.dumps(report, separators=(",", ":")))
        print(report["message"])
        return 0 if report["succeeded"] else 1
    from lykeion.api.featuremanifest import FeatureManifestSpec

    spec = FeatureManifestSpec.model_validate(body["spec"])
    run_range = Range(_time(args.start), _time(args.end))
    result = RunResult(args.start, args.end)
    late_rows: int | None = None
    try:
        drops = [int(g) for g in args.drop_generations.split(",") if g.strip()]
        if drops:
            drop_generations(view, drops, args.offline, args.online)
        if args.engine == "duckdb":
            offline, online = open_offline(args.offline), open_online(args.online)
            try:
                result = materialize_duckdb(spec, view, run_range, offline, online, args.data_root)
            finally:
                offline.close()
                online.close()
        else:
            from lykeion.features.pipeline import run_beam

            result = run_beam(
                spec, view, run_range, args.offline, args.online, args.data_root, beam_args
            )
        if result.succeeded and run_range.start is not None:
            late_rows = _late_rows(
                spec, view, run_range.start, args.offline, args.data_root, beam_args
            )
    except Exception as error:  # noqa: BLE001 - the run's outcome is reported, not raised
        traceback.print_exc()
        result.succeeded = False
        result.message = f"{type(error).__name__}: {error}"
    report = result.to_json()
    if late_rows is not None:
        report["late_rows"] = late_rows
        if late_rows:
            result.message += f"; {late_rows} late source row(s) behind {args.start}"
            report["message"] = result.message
    # Compact: a Kubernetes termination message holds at most 4 KiB.
    args.result.write_text(json.dumps(report, separators=(",", ":")))
    print(result.message)
    return 0 if result.succeeded else 1


def drop_generations(
    view: FeatureView, generations: list[int], offline_uri: str, online_uri: str
) -> None:
    """Drop the tables of `generations` of `view`'s manifest from both stores."""
    offline, online = open_offline(offline_uri), open_online(online_uri)
    try:
        for generation in generations:
            old = replace(view, generation=generation)
            online.drop(old)
            offline.drop(old)
    finally:
        offline.close()
        online.close()


def drop_only(
    view: FeatureView, generations: list[int], offline_uri: str, online_uri: str
) -> dict[str, Any]:
    """Drop the tables of `generations` of `view`'s manifest, one generation at a time (both
    stores), and report: `succeeded`, `message`, `dropped` (table names of the generations
    dropped) and `tables_left` (those of the generations not fully dropped: all from the
    first that failed, since a store that fails once is not asked again). Never raises for a
    store's failure: it is the report's message (exception type and text)."""
    tables = {g: replace(view, generation=g).table for g in generations}
    dropped: list[int] = []
    try:
        offline = open_offline(offline_uri)
        try:
            online = open_online(online_uri)
            try:
                for generation in generations:
                    old = replace(view, generation=generation)
                    online.drop(old)
                    offline.drop(old)
                    dropped.append(generation)
            finally:
                online.close()
        finally:
            offline.close()
    except Exception as error:  # noqa: BLE001 - the run's outcome is reported, not raised
        traceback.print_exc()
        left = [tables[g] for g in generations if g not in dropped]
        return {
            "succeeded": False,
            "message": f"{type(error).__name__}: {error}",
            "dropped": [tables[g] for g in dropped],
            "tables_left": left,
        }
    return {
        "succeeded": True,
        "message": f"dropped the tables of generation(s) {', '.join(map(str, generations))}",
        "dropped": [tables[g] for g in generations],
        "tables_left": [],
    }


def _late_rows(
    spec: FeatureManifestSpec,
    view: FeatureView,
    boundary: datetime,
    offline_uri: str,
    data_root: str | None,
    beam_args: list[str],
) -> int:
    offline = open_offline(offline_uri)
    try:
        project = bigquery_project(spec, beam_args)
        return count_late_rows(spec, view, boundary, offline, data_root, project=project)
    finally:
        offline.close()


if __name__ == "__main__":
    sys.exit(main())
