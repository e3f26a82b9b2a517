"""The fuzz tests' drivers, run longer: never a 500 from the model server or the Feature API.

    python benchmarks/fuzz.py [--examples 2000] [--only v2|graphql] [--out FILE]

Starts what tests/integration/test_model_server.py and test_feature_api.py start (a real
MLflow model and SQLite online store behind `python -m lykeion.serving`; manifests of a
string-keyed and an int64-keyed entity behind `python -m lykeion.feature_api`) and runs
tests/integration/fuzzing.py with --examples per Schemathesis part (the binary-extension
and GraphQL-variable parts, cheaper per request, get five times as many). Derandomized
like CI, so a run is repeatable; a larger --examples reaches further. Prints the number of
requests per part, the statuses, and every failure (a 5xx other than the store's 503, an
answer outside the protocol). Takes about (examples x 0.35 s) for the model server on two
shared cores (--examples 400: 3.4 min for both servers), up to three times as long on a
loaded machine (--examples 1000: 21 min at load 15-20): run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lykeion.features.view import FeatureView  # noqa: E402
from tests.integration.fuzzing import fuzz_graphql, fuzz_v2  # noqa: E402
from tests.integration.serving_fixture import (  # noqa: E402
    KEY,
    NAME,
    ServedModel,
    Servers,
    fill_store,
    log_model,
)
from tests.integration.test_feature_api import (  # noqa: E402
    FUZZ_LOOKUPS,
    command_line,
    rider_manifest,
    write_riders,
)
from tests.objects import manifest  # noqa: E402


def run_v2(folder: Path, examples: int) -> dict[str, Any]:
    tracking_uri, model_uri = log_model(folder)
    fill_store(folder / "online.db")
    servers = Servers(folder / "servers")
    try:
        served = ServedModel(tracking_uri, model_uri, folder / "online.db")
        server = servers.server("fuzz", served.config())
        report = fuzz_v2(server.url, NAME, KEY, examples, binary_examples=5 * examples,
                         version="1.0")  # fmt: skip
        return report.summary()
    finally:
        servers.stop_all()


def run_graphql(folder: Path, examples: int) -> dict[str, Any]:
    riders = rider_manifest()
    drivers = manifest("driver-trips", "driver", {"trips": "int64"})
    drivers["spec"]["entity"]["keyType"] = "int64"
    write_riders(folder / "features.db", FeatureView.from_body(riders))
    objects = folder / "objects.yaml"
    objects.write_text(yaml.safe_dump_all([riders, drivers]))
    args = ["--online", f"sqlite://{folder / 'features.db'}", "--manifest", str(objects)]
    with command_line(args, folder / "feature-api.log") as url:
        report = fuzz_graphql(url, examples, FUZZ_LOOKUPS, variable_examples=5 * examples)
    return report.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--only", choices=["v2", "graphql"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"examples": args.examples}
    with tempfile.TemporaryDirectory(prefix="lykeion-fuzz-") as folder:
        if args.only in (None, "v2"):
            results["v2"] = run_v2(Path(folder), args.examples)
        if args.only in (None, "graphql"):
            results["graphql"] = run_graphql(Path(folder), args.examples)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    failed = any(block["failures"] for key, block in results.items() if key != "examples")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
