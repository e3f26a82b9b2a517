"""Run one materialization of a FeatureManifest (what the executors launch).

    python -m lykeion.features.run --manifest manifest.json \\
        --offline duckdb:///data/offline.duckdb --online sqlite:///data/online.db \\
        [--start ISO] [--end ISO] [--engine beam|duckdb] [--data-root DIR] \\
        [--result result.json] [-- beam pipeline options, e.g. --runner=FlinkRunner]

`manifest.json` is the FeatureManifest object (metadata + spec). The result (rows read,
written, bad, duration, success) is written as JSON; the exit code is 0 only on success.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path

from lykeion.features.compile import Range
from lykeion.features.materialize import RunResult, materialize_duckdb
from lykeion.features.stores import open_offline, open_online
from lykeion.features.view import FeatureView


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
    view = FeatureView.from_body(body)
    from lykeion.api.featuremanifest import FeatureManifestSpec

    spec = FeatureManifestSpec.model_validate(body["spec"])
    run_range = Range(_time(args.start), _time(args.end))
    result = RunResult(args.start, args.end)
    try:
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
    except Exception as error:  # noqa: BLE001 - the run's outcome is reported, not raised
        traceback.print_exc()
        result.succeeded = False
        result.message = f"{type(error).__name__}: {error}"
    # Compact: a Kubernetes termination message holds at most 4 KiB.
    args.result.write_text(json.dumps(result.to_json(), separators=(",", ":")))
    print(result.message)
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
