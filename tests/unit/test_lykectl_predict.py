"""`lykectl predict`: key parsing and finding the endpoint of a family/segment."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from lykectl.errors import CliError
from lykectl.predict import endpoint_of, parse_keys


def test_keys_become_rows() -> None:
    assert parse_keys(["rider_id=r1,r2"]) == [{"rider_id": "r1"}, {"rider_id": "r2"}]
    assert parse_keys(["rider_id=r1", "driver_id=d1"]) == [{"rider_id": "r1", "driver_id": "d1"}]
    with pytest.raises(typer.BadParameter, match="NAME=VALUE"):
        parse_keys(["rider_id"])
    with pytest.raises(typer.BadParameter, match="same number"):
        parse_keys(["rider_id=r1,r2", "driver_id=d1"])


def _deployment(segment: str, endpoint: str | None, message: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [{"type": "Ready", "status": "False", "message": message}]
    }
    if endpoint:
        status["endpoint"] = endpoint
    return {
        "metadata": {"name": f"forward-{segment}"},
        "spec": {"family": "forward", "segment": segment},
        "status": status,
    }


def test_the_endpoint_is_the_deployments_status_or_a_reason() -> None:
    deployments = [_deployment("eu", "http://eu"), _deployment("default", "http://d")]
    assert endpoint_of(deployments, "forward", "default") == "http://d"
    with pytest.raises(CliError, match="no Deployment serves forward/us"):
        endpoint_of(deployments, "forward", "us")
    waiting = [_deployment("default", None, "1.0: Model forward-default-1.0 is not Evaluated")]
    with pytest.raises(CliError, match=r"no endpoint yet: 1\.0: Model"):
        endpoint_of(waiting, "forward", "default")
