"""`lykectl features read` and `features search` as subprocesses against a real Feature API
server process (its command line, --manifest mode) over a real SQLite online store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lykeion.features.view import FeatureView
from tests.integration.test_feature_api import command_line, rider_manifest, write_riders

LYKECTL = str(Path(sys.executable).parent / "lykectl")


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("feature-api")
    body = rider_manifest()
    write_riders(folder / "online.db", FeatureView.from_body(body))
    manifest = folder / "features.yaml"
    manifest.write_text(yaml.safe_dump(body))
    args = ["--online", f"sqlite://{folder / 'online.db'}", "--manifest", str(manifest)]
    with command_line(args, folder / "server.log") as url:
        yield url


def lykectl(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LYKECTL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LYKEION_HOME": str(home)},
    )


def test_read_known_and_unknown_keys(api_url: str, tmp_path: Path) -> None:
    args = ["features", "read", "rider", "--keys", "r0,nobody", "--features", "age"]
    done = lykectl(*args, "--api-url", api_url, "-o", "json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    # Int64 values travel as strings (JSON numbers lose precision above 2**53).
    assert json.loads(done.stdout) == [
        {"key": "r0", "features": {"age": str(2**60)}},
        {"key": "nobody", "features": None},
    ]

    table = lykectl(*args, "--features", "score", "--api-url", api_url, home=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = [line.split() for line in table.stdout.splitlines()]
    assert lines == [["KEY", "AGE", "SCORE"], ["r0", str(2**60), "0.0"], ["nobody", "-", "-"]]


def test_read_reports_the_api_errors_on_one_line(api_url: str, tmp_path: Path) -> None:
    done = lykectl(
        "features", "read", "rider", "--keys", "r0", "--features", "height",
        "--api-url", api_url, home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "rider.height" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_read_takes_the_url_from_platform_json(api_url: str, tmp_path: Path) -> None:
    state = {
        "api_server": "https://127.0.0.1:1",
        "kubeconfig": "/nowhere",
        "kubectl": "kubectl",
        "operator_health_port": 1,
        "started_at": "2026-01-01T00:00:00Z",
        "processes": [],
        "feature_api_url": api_url,
    }
    (tmp_path / "platform.json").write_text(json.dumps(state))
    done = lykectl(
        "features", "read", "rider", "--keys", "r2", "--features", "age", "-o", "yaml",
        home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == [{"key": "r2", "features": {"age": str(2**60 + 2)}}]


def test_search(api_url: str, tmp_path: Path) -> None:
    done = lykectl("features", "search", "rider", "--api-url", api_url, "-o", "json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    refs = {hit["ref"] for hit in json.loads(done.stdout)}
    assert refs == {"rider.age", "rider.score", "rider.seen", "rider.labels"}

    table = lykectl("features", "search", "age", "--api-url", api_url, home=tmp_path)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["FEATURE", "TYPE", "MANIFEST", "OWNER", "DESCRIPTION"]
    first = rows[0].split()
    assert first[:4] == ["rider.age", "int64", "default/rider-activity", "team@example.com"]

    nothing = lykectl("features", "search", "zzzunknown", "--api-url", api_url, home=tmp_path)
    assert nothing.returncode == 0
    assert nothing.stdout == "" and "No features match" in nothing.stderr
