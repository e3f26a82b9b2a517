"""The operator's readiness follows kopf's watch streams (plain data, a fake clock)."""

from __future__ import annotations

from lykeion import GROUP, VERSION
from lykeion.api.kinds import KINDS
from lykeion.watch_health import WatchHealth, watched_plurals

BASE = f"/apis/{GROUP}/{VERSION}"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def health(clock: Clock) -> WatchHealth:
    return WatchHealth(GROUP, VERSION, frozenset({"models", "deployments"}), grace=2.0, clock=clock)


def test_not_ready_until_every_plural_is_watched() -> None:
    clock = Clock()
    h = health(clock)
    assert h.state() == (False, "not yet watching deployments, models")
    h.connected(f"{BASE}/models?watch=true&resourceVersion=5")
    assert h.state() == (False, "not yet watching deployments")
    h.connected(f"https://10.0.0.1:6443{BASE}/deployments?watch=true")
    assert h.state()[0]


def test_lists_and_foreign_watches_do_not_count() -> None:
    clock = Clock()
    h = health(clock)
    h.connected(f"{BASE}/models")  # the list before the watch
    h.connected(f"{BASE}/models?watch=false")
    h.connected("/apis/apiextensions.k8s.io/v1/customresourcedefinitions?watch=true")
    h.connected(f"/apis/other.io/{VERSION}/deployments?watch=true")
    assert h.state() == (False, "not yet watching deployments, models")


def test_a_disconnect_longer_than_the_grace_makes_it_unready_until_reconnected() -> None:
    clock = Clock()
    h = health(clock)
    for plural in ("models", "deployments"):
        h.connected(f"{BASE}/namespaces/a/{plural}?watch=true")
    h.disconnected(f"{BASE}/namespaces/a/models?watch=true&resourceVersion=9")
    clock.now += 1.9  # a reconnect after the server's timeoutSeconds is not an outage
    assert h.state()[0]
    clock.now += 0.2
    assert h.state() == (False, f"watch disconnected: {BASE}/namespaces/a/models")
    # a second disconnect notice does not restart the clock of the outage
    h.disconnected(f"{BASE}/namespaces/a/models?watch=true")
    assert not h.state()[0]
    h.connected(f"{BASE}/namespaces/a/models?watch=true")
    assert h.state()[0]


def test_each_namespace_path_is_its_own_watch() -> None:
    clock = Clock()
    h = health(clock)
    for ns in ("a", "b"):
        for plural in ("models", "deployments"):
            h.connected(f"{BASE}/namespaces/{ns}/{plural}?watch=true")
    h.disconnected(f"{BASE}/namespaces/b/deployments?watch=true")
    clock.now += 5
    assert h.state() == (False, f"watch disconnected: {BASE}/namespaces/b/deployments")


def test_the_operator_tracks_every_kind() -> None:
    assert watched_plurals(KINDS) == {k.plural for k in KINDS}
    assert len(watched_plurals(KINDS)) == 4
