"""Dropping a deleted FeatureManifest's tables in a run: the finalizer's steps (pure), the
run's work, its Job, and the run's own report against real embedded stores."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lykeion.api.featuremanifest import FeatureManifestSpec, FeatureManifestStatus
from lykeion.config import PlatformConfig
from lykeion.executors.base import State, Work, WorkStatus
from lykeion.executors.kubernetes import OWNER_UID_LABEL, UNOWNED_TTL, build_job
from lykeion.features.run import drop_only, main
from lykeion.features.view import FeatureView
from lykeion.handlers.materialization import (
    DROP_POLL_FIRST,
    DROP_POLL_MAX,
    TABLES_DROPPED,
    drop_poll_delay,
    drop_run_name,
    drop_work_for,
    next_drop_step,
)
from lykeion.runtime import Resource
from tests import objects

TABLES = ["t_g1", "t_g2"]


def _name(attempt: int) -> str:
    return f"m-drop-a{attempt}"


def _body() -> dict[str, Any]:
    body = objects.manifest("m")
    body["metadata"] |= {"uid": "uid-1", "generation": 3, "namespace": "team"}
    body["status"] = {"storedGenerations": [1, 2]}
    return body


def _parsed() -> Resource[FeatureManifestSpec, FeatureManifestStatus]:
    """`_body()` as the runtime reads it: its spec and status parsed once."""
    return Resource.parse(_body(), FeatureManifestSpec, FeatureManifestStatus)


def _config() -> PlatformConfig:
    return PlatformConfig(
        data_dir=Path("/data"),
        online_store="sqlite:///data/online.db",
        offline_store="duckdb:///data/offline.duckdb",
        data_root="/data",
        python="python",
        image="registry.example.com/lykeion/workloads:1",
    )


FAILED = WorkStatus(
    State.FAILED,
    "exited with 1",
    {"succeeded": False, "message": "IOException: no such file", "tables_left": ["t_g2"]},
)


def test_the_first_step_submits_attempt_one_and_holds() -> None:
    step = next_drop_step([WorkStatus(State.MISSING)], False, TABLES, _name)
    assert (step.release, step.submit, step.check, step.warning) == (False, 1, None, None)
    assert step.delay == DROP_POLL_FIRST


def test_a_running_attempt_is_followed_not_submitted_again() -> None:
    for state in (State.PENDING, State.RUNNING):
        step = next_drop_step([FAILED, WorkStatus(state, "1 pod(s) active")], False, TABLES, _name)
        assert (step.release, step.submit, step.check) == (False, None, None)
        assert "m-drop-a2" in step.waiting and step.delay == drop_poll_delay(2)


def test_only_a_succeeded_attempt_releases_without_tables_left() -> None:
    step = next_drop_step([FAILED, WorkStatus(State.SUCCEEDED)], False, TABLES, _name)
    assert step.release and step.tables_left == () and step.submit is None


def test_a_failed_attempt_is_reported_once_with_reason_and_tables_and_retried() -> None:
    step = next_drop_step([FAILED, WorkStatus(State.MISSING)], False, TABLES, _name)
    assert not step.release and step.submit == 2
    assert step.check is not None
    assert (step.check.type, step.check.ok, step.check.reason) == (
        TABLES_DROPPED,
        False,
        "DropFailed",
    )
    for text in (step.check.message, step.warning or ""):
        assert "m-drop-a1 failed: IOException: no such file" in text
        assert "tables left: t_g2" in text and "retrying as m-drop-a2" in text


def test_a_failed_attempt_without_a_report_leaves_every_table() -> None:
    crashed = WorkStatus(State.FAILED, "OOMKilled: over 512Mi", None, reason="OOMKilled")
    step = next_drop_step([crashed, WorkStatus(State.MISSING)], False, TABLES, _name)
    assert step.check is not None and "OOMKilled: over 512Mi" in step.check.message
    assert "tables left: t_g1, t_g2" in step.check.message


def test_giving_up_releases_with_the_tables_left_and_submits_nothing() -> None:
    step = next_drop_step([FAILED, WorkStatus(State.MISSING)], True, TABLES, _name)
    assert (step.release, step.tables_left, step.submit, step.warning) == (
        True,
        ("t_g2",),
        None,
        None,
    )


def test_a_stuck_attempt_is_a_condition_and_cancelled_when_giving_up() -> None:
    stuck = WorkStatus(State.PENDING, "image not found", stuck="ImagePullFailed")
    held = next_drop_step([stuck], False, TABLES, _name)
    assert not held.release and held.submit is None and held.cancel is None
    assert held.check is not None and held.check.reason == "ImagePullFailed"
    assert "m-drop-a1 cannot go on: image not found" in held.check.message
    gone = next_drop_step([stuck], True, TABLES, _name)
    assert (gone.release, gone.cancel, gone.tables_left) == (True, "m-drop-a1", tuple(TABLES))


def test_poll_delays_double_up_to_a_bound() -> None:
    delays = [drop_poll_delay(n) for n in range(1, 30)]
    assert delays[:3] == [DROP_POLL_FIRST, 2 * DROP_POLL_FIRST, 4 * DROP_POLL_FIRST]
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert max(delays) == DROP_POLL_MAX


def test_drop_run_names_are_labels_per_attempt() -> None:
    assert drop_run_name("rides", 1) == "rides-drop-a1"
    long = drop_run_name("r" * 70, 12)
    assert len(long) <= 63 and long.endswith("-drop-a12")
    assert drop_run_name("r" * 70, 12) != drop_run_name("r" * 69 + "s", 12)


def test_drop_work_runs_the_drop_entry_point_unowned_with_the_uid() -> None:
    work = drop_work_for(_parsed(), 2, _config())
    assert (work.name, work.namespace, work.image) == (
        "m-drop-a2",
        "team",
        "registry.example.com/lykeion/workloads:1",
    )
    assert work.command[:3] == ("python", "-m", "lykeion.features.run")
    args = list(work.command)
    # Stored generations and the object's own (a backfill may have been submitted).
    assert args[args.index("--drop-generations") + 1] == "1,2,3"
    assert args[-1] == "--drop-only"
    assert args[args.index("--offline") + 1] == "duckdb:///data/offline.duckdb"
    assert (work.owner_uid, work.owned) == ("uid-1", False)


def test_an_unowned_job_carries_the_uid_and_a_ttl_owned_ones_do_not() -> None:
    work = drop_work_for(_parsed(), 1, _config())
    job = build_job(work)
    assert job["metadata"]["labels"][OWNER_UID_LABEL] == "uid-1"
    assert job["spec"]["ttlSecondsAfterFinished"] == UNOWNED_TTL
    owned = Work("r", "team", "img", ("true",), owner=_body())
    assert "ttlSecondsAfterFinished" not in build_job(owned)["spec"]


def _tables(data: Path) -> set[str]:
    con = duckdb.connect(str(data / "offline.duckdb"))
    try:
        names = {f"offline:{r[0]}" for r in con.execute("SHOW TABLES").fetchall()}
    finally:
        con.close()
    lite = sqlite3.connect(data / "online.db")
    try:
        rows = lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        lite.close()
    return names | {f"online:{r[0]}" for r in rows}


def _create(data: Path, tables: list[str]) -> None:
    con = duckdb.connect(str(data / "offline.duckdb"))
    lite = sqlite3.connect(data / "online.db")
    try:
        for table in tables:
            con.execute(f'CREATE TABLE "{table}" (x INTEGER)')
            lite.execute(f'CREATE TABLE "{table}" (x INTEGER)')
        lite.commit()
    finally:
        con.close()
        lite.close()


def test_the_drop_run_drops_only_the_generations_given(tmp_path: Path) -> None:
    body = _body()
    views = {g: FeatureView.from_body(body, g) for g in (1, 2, 3)}
    _create(tmp_path, [v.table for v in views.values()])
    offline, online = (
        f"duckdb://{tmp_path / 'offline.duckdb'}",
        f"sqlite://{tmp_path / 'online.db'}",
    )
    report = drop_only(views[1], [1, 2], offline, online)
    assert report["succeeded"] and report["tables_left"] == []
    assert report["dropped"] == [views[1].table, views[2].table]
    assert _tables(tmp_path) == {f"offline:{views[3].table}", f"online:{views[3].table}"}
    # Idempotent: dropping again (a restarted finalizer's new attempt) succeeds.
    assert drop_only(views[1], [1, 2], offline, online)["succeeded"]


def test_a_store_that_fails_is_reported_with_every_table_left(tmp_path: Path) -> None:
    view = FeatureView.from_body(_body(), 1)
    report = drop_only(view, [1, 2], "nosuch://x", f"sqlite://{tmp_path / 'online.db'}")
    assert not report["succeeded"] and report["message"]
    assert report["tables_left"] == [view.table, FeatureView.from_body(_body(), 2).table]


def test_the_entry_point_writes_the_report_and_exits_non_zero_on_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    result = tmp_path / "result.json"
    args = ["--manifest-json", json.dumps(_body()), "--online", f"sqlite://{tmp_path / 'o.db'}"]
    args += ["--drop-generations", "1", "--drop-only", "--result", str(result)]
    assert main([*args, "--offline", f"duckdb://{tmp_path / 'off.duckdb'}"]) == 0
    assert json.loads(result.read_text())["succeeded"] is True
    assert main([*args, "--offline", "nosuch://x"]) == 1
    assert json.loads(result.read_text())["tables_left"]


def test_a_running_attempt_past_the_limit_is_cancelled_and_the_object_released() -> None:
    # A store that never answers: the run neither fails nor ends, so the limit must end it.
    step = next_drop_step([WorkStatus(State.RUNNING, "1 pod(s) active")], True, TABLES, _name)
    assert (step.release, step.cancel, step.tables_left) == (True, "m-drop-a1", tuple(TABLES))
    assert step.check is not None and step.check.reason == "DropTimedOut"
    # Nothing submitted in the time given (every submission refused): released too.
    assert next_drop_step([WorkStatus(State.MISSING)], True, TABLES, _name).release


class _Refusing:
    """An executor whose submissions the API server refuses as it does in a namespace
    being deleted (NamespaceLifecycle admission), or with another error."""

    def __init__(self, message: str) -> None:
        self.message = message

    async def status(self, namespace: str, name: str, uid: str | None = None) -> WorkStatus:
        return WorkStatus(State.MISSING)

    async def submit(self, work: Work) -> None:
        raise RuntimeError(self.message)

    async def cancel(self, namespace: str, name: str) -> None:
        raise AssertionError("nothing to cancel")


def test_a_namespace_being_deleted_releases_the_manifest_with_its_tables_named() -> None:
    import asyncio
    from datetime import UTC, datetime

    import kopf

    from lykeion.handlers.materialization import drop_tables

    refused = (
        '(403) Forbidden: jobs.batch "m-drop-a1" is forbidden: unable to create new content '
        "in namespace team because it is being terminated"
    )
    step = asyncio.run(
        drop_tables(_parsed(), _Refusing(refused), _config(), datetime.now(UTC))  # type: ignore[arg-type]
    )
    assert step.release and step.check is not None
    assert step.check.reason == "NamespaceTerminating" and "team" in step.check.message
    assert [t.rsplit("_", 1)[0] for t in step.tables_left] == [f"team__m__g{g}" for g in (1, 2, 3)]
    # Any other refusal holds the finalizer (kopf retries) and says what refused it.
    with pytest.raises(kopf.TemporaryError, match="cannot submit drop run m-drop-a1: quota"):
        asyncio.run(
            drop_tables(_parsed(), _Refusing("quota"), _config(), datetime.now(UTC))  # type: ignore[arg-type]
        )
