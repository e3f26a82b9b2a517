"""A stored `currentRun` the status model refuses (written by another version of the
operator): no second run is planned beside the one it may record, and deletion stops that
run by its name before dropping tables."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest

from lykeion.api.featuremanifest import FeatureManifestSpec, FeatureManifestStatus
from lykeion.executors.base import State, Work, WorkStatus
from lykeion.handlers.materialization import (
    RUN_RECORD_UNREADABLE,
    drop_tables,
    materialize,
    unreadable_run,
)
from lykeion.runtime import Resource
from tests import objects
from tests.unit.test_feature_drop import _config

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


class Recording:
    """An executor that records what is asked of it; every run is `state`."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.submitted: list[str] = []
        self.cancelled: list[str] = []

    async def submit(self, work: Work) -> WorkStatus:
        self.submitted.append(work.name)
        return WorkStatus(State.PENDING)

    async def status(self, namespace: str, name: str, owner_uid: str | None = None) -> WorkStatus:
        return WorkStatus(self.state)

    async def cancel(self, namespace: str, name: str) -> None:
        self.cancelled.append(name)


def _manifest(current_run: Any) -> Resource[FeatureManifestSpec, FeatureManifestStatus]:
    body = objects.manifest("m")
    body["metadata"] |= {"uid": "uid-1", "generation": 2, "namespace": "team"}
    body["status"] = {"storedGenerations": [1], "runCount": 1, "currentRun": current_run}
    return Resource.parse(body, FeatureManifestSpec, FeatureManifestStatus)


REFUSED = {"name": "m-g2-r1", "generation": "two", "startedAt": "2026-12-02T11:00:00Z"}


@pytest.mark.parametrize(
    ("record", "name"), [(REFUSED, "m-g2-r1"), ({"generation": "two"}, ""), ("garbage", "")]
)
def test_a_refused_run_record_holds_planning(record: Any, name: str) -> None:
    manifest = _manifest(record)
    assert manifest.status.current_run is None and "currentRun" in manifest.status_problems
    assert unreadable_run(manifest) == name
    executor = Recording(State.RUNNING)
    fields, check = asyncio.run(materialize(manifest, executor, _config(), NOW))  # type: ignore[arg-type]
    assert executor.submitted == [] and fields == {}
    assert (check.ok, check.reason) == (False, RUN_RECORD_UNREADABLE)
    assert "status.currentRun" in check.message and "remove status.currentRun" in check.message


def test_without_a_record_a_run_is_planned() -> None:
    manifest = _manifest(None)
    assert unreadable_run(manifest) is None
    executor = Recording(State.MISSING)
    fields, _ = asyncio.run(materialize(manifest, executor, _config(), NOW))  # type: ignore[arg-type]
    assert executor.submitted == ["m-g2-r2"] and fields["runCount"] == 2


def test_deletion_stops_the_run_a_refused_record_names() -> None:
    executor = Recording(State.RUNNING)
    with pytest.raises(kopf.TemporaryError, match="m-g2-r1"):
        asyncio.run(drop_tables(_manifest(REFUSED), executor, _config(), NOW))  # type: ignore[arg-type]
    assert executor.cancelled == ["m-g2-r1"] and executor.submitted == []
