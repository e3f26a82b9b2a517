"""The operator's freshness gauges: ages computed at scrape time from status times."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lykeion.metrics import Freshness


def _samples(freshness: Freshness) -> dict[tuple[str, str, str], float]:
    registry = CollectorRegistry()
    registry.register(freshness)
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels["namespace"], s.labels["manifest"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_ages_grow_with_the_clock_and_vanish_with_the_manifest() -> None:
    now = [1_800_000_000.0]  # 2027-01-15T08:00:00Z
    freshness = Freshness(clock=lambda: now[0])
    freshness.record(
        "team-a",
        "rides",
        {"newestEventTime": "2027-01-15T07:00:00Z", "lastRunTime": "2027-01-15T07:59:00Z"},
    )
    freshness.record("team-a", "new", {"lastRunTime": None})  # never materialized
    assert _samples(freshness) == {
        ("lykeion_feature_newest_event_age_seconds", "team-a", "rides"): 3600.0,
        ("lykeion_feature_last_success_age_seconds", "team-a", "rides"): 60.0,
    }
    now[0] += 30
    assert (
        _samples(freshness)[("lykeion_feature_last_success_age_seconds", "team-a", "rides")] == 90.0
    )
    freshness.forget("team-a", "rides")
    assert _samples(freshness) == {}
