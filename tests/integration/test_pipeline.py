"""The Beam pipeline (on DirectRunner and on FlinkRunner) and the in-process engine write
identical stores for the example, and an incremental run after a partial backfill ends
where one full backfill ends."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from lykeion.features.view import FeatureView
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.online.sqlite import SqliteOnlineStore

ROOT = Path(__file__).resolve().parents[2]
FLINK_INSTALL = ROOT / "scripts" / "install-flink-job-server.sh"
MANIFEST = ROOT / "examples" / "forward" / "features.yaml"
NOW = datetime(2026, 11, 27, tzinfo=UTC)
# Reads at the source's end (Apr 30), as its 30-day windows decay, and long after.
READ_TIMES = [
    datetime(2026, 4, 30, 23, 59, tzinfo=UTC),
    datetime(2026, 5, 10, tzinfo=UTC),
    datetime(2026, 5, 25, 12, tzinfo=UTC),
    NOW,
]


def flink_job_server_jar() -> Path:
    """Beam's Flink job server, built once outside the repo (`LYKEION_FLINK_JOB_SERVER` is
    the folder the install script prints)."""
    folder = os.environ.get("LYKEION_FLINK_JOB_SERVER")
    if not folder:
        done = subprocess.run(
            ["bash", str(FLINK_INSTALL)], capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"installing the Flink job server failed:\n{done.stderr}"
        folder = done.stdout.strip().splitlines()[-1]
    return Path(folder) / "beam-flink-job-server.jar"


def _manifest() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    body["metadata"]["namespace"] = "default"
    return body


def _run(
    folder: Path,
    engine: str,
    start: str | None = None,
    end: str | None = None,
    source: Path | None = None,
    beam_args: list[str] | None = None,
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    body = _manifest()
    if source is not None:
        body["spec"]["source"]["file"]["path"] = str(source)
    command = [
        sys.executable, "-m", "lykeion.features.run",
        "--manifest-json", json.dumps(body),
        "--offline", f"duckdb://{folder / 'offline.duckdb'}",
        "--online", f"sqlite://{folder / 'online.db'}",
        "--engine", engine, "--data-root", str(ROOT),
        "--result", str(folder / "result.json"),
    ]  # fmt: skip
    if start:
        command += ["--start", start]
    if end:
        command += ["--end", end]
    command += beam_args or []
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    result: dict[str, Any] = json.loads((folder / "result.json").read_text())
    result["exit_code"] = done.returncode
    result["log"] = done.stdout + done.stderr
    return result


def _stores(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """The offline history, and online reads of every key at each of `READ_TIMES`."""
    view = FeatureView.from_body(_manifest())
    history = DuckDBOfflineStore(folder / "offline.duckdb").history(view).to_pylist()
    keys = sorted({row["entity_key"] for row in history})
    online = SqliteOnlineStore(folder / "online.db")
    try:
        latest = [
            entry
            for moment in READ_TIMES
            for entry in online.read(view, keys, view.feature_names, now=moment)
        ]
    finally:
        online.close()
    return history, latest


def _online_table(folder: Path) -> list[tuple[Any, ...]]:
    """The online store's rows as stored: values at the newest event and the steps."""
    view = FeatureView.from_body(_manifest())
    with sqlite3.connect(folder / "online.db") as conn:
        return conn.execute(f'SELECT * FROM "{view.table}" ORDER BY entity_key').fetchall()


def _reference(factory: pytest.TempPathFactory, engine: str) -> Path:
    folder = factory.mktemp(f"{engine}-engine")
    result = _run(folder, engine)
    assert result["exit_code"] == 0, result["log"]
    return folder


@pytest.fixture(scope="module")
def duckdb_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _reference(tmp_path_factory, "duckdb")


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Beam pipeline on DirectRunner."""
    return _reference(tmp_path_factory, "beam")


COUNTERS = ("rows_read", "rows_written", "bad_rows", "duplicate_rows", "online_rows")


def test_beam_and_duckdb_engines_write_identical_stores(duckdb_run: Path, direct_run: Path) -> None:
    beam = json.loads((direct_run / "result.json").read_text())
    reference = json.loads((duckdb_run / "result.json").read_text())
    for key in COUNTERS:
        assert beam[key] == reference[key], key
    assert reference["rows_written"] > 10_000 and reference["online_rows"] == 300
    assert beam["max_event_time"] == reference["max_event_time"] == "2026-04-30T23:44:06+00:00"
    history, latest = _stores(direct_run)
    assert (history, latest) == _stores(duckdb_run)
    assert _online_table(direct_run) == _online_table(duckdb_run)
    assert all(entry is not None for entry in latest)
    # The windows decay after the last ride (Apr 30): 30 days on, every count is 0.
    counts = [entry["drop_offs_count"] for entry in latest if entry is not None]
    per_time = [counts[i * 300 : (i + 1) * 300] for i in range(len(READ_TIMES))]
    assert sum(per_time[0]) > sum(per_time[1]) > sum(per_time[2]) > 0
    assert set(per_time[3]) == {0}


def test_flink_runner_writes_what_direct_runner_writes(direct_run: Path, tmp_path: Path) -> None:
    """The same pipeline on a distributed engine: Beam's FlinkRunner with an embedded Flink
    (`[local]`, two parallel task slots), the SDK harness in this process (LOOPBACK)."""
    flink = _run(
        tmp_path,
        "beam",
        beam_args=[
            "--runner=FlinkRunner",
            "--flink_master=[local]",
            f"--flink_job_server_jar={flink_job_server_jar()}",
            "--environment_type=LOOPBACK",
            "--parallelism=2",
            "--artifact_port=0",
            "--expansion_port=0",
        ],
    )
    assert flink["exit_code"] == 0, flink["log"][-5000:]
    # Beam started the Flink job server and submitted the pipeline to it.
    assert "starting service" in flink["log"] and "beam-flink-job-server.jar" in flink["log"]
    direct = json.loads((direct_run / "result.json").read_text())
    for key in COUNTERS:
        assert flink[key] == direct[key], key
    assert _stores(tmp_path) == _stores(direct_run)


@pytest.mark.parametrize("engine", ["duckdb", "beam"])
def test_incremental_run_continues_a_partial_backfill(
    duckdb_run: Path, tmp_path: Path, engine: str
) -> None:
    cut = "2026-03-01T00:00:00+00:00"
    first = _run(tmp_path, engine, end=cut)
    second = _run(tmp_path, engine, start=cut)
    assert first["exit_code"] == second["exit_code"] == 0, first["log"] + second["log"]
    assert (
        first["rows_written"] + second["rows_written"]
        == json.loads((duckdb_run / "result.json").read_text())["rows_written"]
    )
    # Window sums may add in another order across the cut: floats agree to 1e-12.
    history, latest = _stores(tmp_path)
    full_history, full_latest = _stores(duckdb_run)
    _same(latest, full_latest)
    _same(history, full_history)


def _same(mine: list[Any], theirs: list[Any]) -> None:
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert (a is None) == (b is None)
        if a is None:
            continue
        assert a.keys() == b.keys()
        for name, value in a.items():
            if isinstance(value, float):
                assert value == pytest.approx(b[name], rel=1e-12), name
            else:
                assert value == b[name], name


def test_rerunning_a_range_writes_each_row_once(duckdb_run: Path, tmp_path: Path) -> None:
    for _ in range(2):
        assert _run(tmp_path, "duckdb")["exit_code"] == 0
    assert _stores(tmp_path) == _stores(duckdb_run)


@pytest.mark.parametrize("engine", ["duckdb", "beam"])
def test_bad_rows_are_counted_and_not_written(tmp_path: Path, engine: str) -> None:
    source = tmp_path / "rides.csv"
    source.write_text(
        "ride_id,rider_id,event_time,age,fare,tier\n"
        "a,r1,2026-01-01T00:00:00Z,30,10.0,standard\n"
        "b,,2026-01-01T01:00:00Z,30,10.0,standard\n"
        "c,r2,2026-01-01T02:00:00Z,old,10.0,premium\n"
        "d,r2,2026-01-01T03:00:00Z,41,12.0,premium\n"
    )
    result = _run(tmp_path / "run", engine, source=source)
    assert result["exit_code"] == 0, result["log"]
    assert (result["rows_read"], result["bad_rows"], result["rows_written"]) == (4, 2, 2)
    history, _ = _stores(tmp_path / "run")
    assert [(row["entity_key"], row["age"]) for row in history] == [("r1", 30), ("r2", 41)]


def test_missing_source_fails_with_the_reason(tmp_path: Path) -> None:
    result = _run(tmp_path, "duckdb", source=tmp_path / "nope.csv")
    assert result["exit_code"] == 1
    assert result["succeeded"] is False
    assert "nope.csv" in result["message"]
