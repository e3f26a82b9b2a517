"""The Feature API as a real HTTP server: uvicorn on a free port, the command line, and the
cluster loader against the real kube-apiserver."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from kubernetes.client.exceptions import ApiException
from starlette.applications import Starlette

from lykeion.feature_api import ServedViews, create_app
from lykeion.feature_api.catalog import Catalog
from lykeion.feature_api.loader import ClusterLoader
from lykeion.features.view import FeatureView
from lykeion.local.controlplane import ControlPlane
from lykeion.local.ports import free_port
from lykeion.local.processes import running
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.integration.fuzzing import fuzz_graphql
from tests.objects import deployment, manifest, model
from tests.support import Cluster, wait_for
from tests.unit.test_feature_api import RecordingStore

RIDER = {"age": "int64", "score": "float64", "seen": "timestamp", "labels": "list<string>"}
SEEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def rider_manifest(namespace: str = "default") -> dict[str, Any]:
    body = manifest("rider-activity", "rider", RIDER)
    body["metadata"]["namespace"] = namespace
    body["spec"]["tags"] = ["pii"]
    return body


def write_riders(path: Path, view: FeatureView) -> None:
    store = SqliteOnlineStore(path)
    store.write(
        view,
        [
            OnlineRow(f"r{i}", datetime.now(UTC), {"age": 2**60 + i, "score": i / 2, "seen": SEEN})
            for i in range(3)
        ],
    )
    store.close()


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """uvicorn in a thread of this process, on a free 127.0.0.1 port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 15, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def command_line(args: list[str], log_path: Path) -> Iterator[str]:
    """`python -m lykeion.feature_api ...` as a child process; yields its base URL."""
    port = free_port()
    with running(
        [sys.executable, "-m", "lykeion.feature_api", *args, "--port", str(port)],
        log_path,
        f"http://127.0.0.1:{port}/healthz",
        "the feature API",
        30,
        grace=20,
    ) as health:
        yield health.removesuffix("/healthz")


def test_uvicorn_serves_graphql_over_http(tmp_path: Path) -> None:
    view = FeatureView.from_body(rider_manifest())
    write_riders(tmp_path / "online.db", view)
    store = RecordingStore(SqliteOnlineStore(tmp_path / "online.db"))
    served_views = ServedViews([view])
    query = "query($ids: [ID!]!) { riders(ids: $ids) { rider_id age seen } }"
    sha = hashlib.sha256(query.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha}}

    with serve(create_app(store, served_views)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").json() == {"status": "ready", "entities": ["rider"]}

        answer = http.post("/graphql", json={"query": query, "variables": {"ids": ["r2", "x"]}})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {
            "data": {
                "riders": [
                    {"rider_id": "r2", "age": str(2**60 + 2), "seen": "2024-05-01T12:00:00+00:00"},
                    None,
                ]
            }
        }

        missing = http.get("/graphql", params={"extensions": json.dumps(persisted)})
        assert missing.json()["errors"][0]["message"] == "PersistedQueryNotFound"
        http.post(
            "/graphql", json={"query": query, "extensions": persisted, "variables": {"ids": []}}
        )
        by_hash = http.get(
            "/graphql",
            params={"extensions": json.dumps(persisted), "variables": json.dumps({"ids": ["r0"]})},
        )
        assert by_hash.json()["data"]["riders"][0]["age"] == str(2**60)

        too_big = http.post("/graphql", content=b"{" + b" " * 70_000 + b"}")
        assert too_big.status_code == 413

        store.down = True
        down = http.post("/graphql", json={"query": query, "variables": {"ids": ["r1"]}})
        assert down.status_code == 503
        assert down.json()["errors"][0]["extensions"]["code"] == "STORE_UNAVAILABLE"
        assert http.get("/readyz").status_code == 503
        store.down = False
        again = http.post("/graphql", json={"query": query, "variables": {"ids": ["r1"]}})
        assert again.status_code == 200
    assert served_views.documents.misses == 1  # every request above ran the one validated document
    store.close()


def test_command_line_serves_manifest_files(tmp_path: Path) -> None:
    body = rider_manifest()
    write_riders(tmp_path / "online.db", FeatureView.from_body(body))
    objects = tmp_path / "objects.yaml"
    objects.write_text(yaml.safe_dump_all([body, model(), deployment()]))
    args = ["--online", f"sqlite://{tmp_path / 'online.db'}", "--manifest", str(objects)]

    help_text = subprocess.run(
        [sys.executable, "-m", "lykeion.feature_api", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--kubeconfig" in help_text and "--max-keys" in help_text

    with command_line(args, tmp_path / "server.log") as url, httpx.Client(base_url=url) as http:
        assert http.get("/readyz").status_code == 200
        answer = http.post("/graphql", json={"query": '{ rider(id: "r1") { age score } }'})
        assert answer.json() == {"data": {"rider": {"age": str(2**60 + 1), "score": 0.5}}}
        hits = http.get("/catalog/search", params={"q": "tag:pii age"}).json()["results"]
        assert [hit["ref"] for hit in hits] == ["rider.age"]
        (definition,) = http.get("/catalog/features/rider.age").json()["definitions"]
        assert definition["models"][0]["deployments"][0]["name"] == "forward-default"


def test_loader_follows_the_cluster(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    served_views = ServedViews()
    catalog = Catalog()
    loader = ClusterLoader(cluster.api, served_views, catalog, namespace=namespace, page_size=1)
    assert loader.refresh() is False
    assert served_views.loaded and served_views.snapshot.entities.by_name == {}

    cluster.create(rider_manifest(namespace), namespace)
    driver = manifest("driver-trips", "driver", {"trips": "int64"})
    cluster.create(driver, namespace)
    cluster.create(model("forward", "default", "1.0", ["rider.age", "driver.trips"]), namespace)
    cluster.create(deployment("forward", "default"), namespace)
    assert loader.refresh() is True
    assert sorted(served_views.snapshot.entities.by_name) == ["driver", "rider"]
    assert loader.refresh() is False  # nothing changed: schema and document cache kept
    (trips,) = catalog.feature("driver.trips")
    assert [d["name"] for d in trips["models"][0]["deployments"]] == ["forward-default"]

    # The operator's finalizer (it runs timers on manifests) makes deletion take a moment.
    cluster.delete("FeatureManifest", namespace, "driver-trips")
    wait_for(
        lambda: loader.refresh() or list(served_views.snapshot.entities.by_name) == ["rider"],
        what="the deleted manifest to leave the schema",
    )
    assert list(served_views.snapshot.entities.by_name) == ["rider"]
    assert catalog.feature("driver.trips") == []


def test_a_feature_the_schema_serves_is_already_in_the_catalog(
    cluster: Cluster, namespace: str
) -> None:
    # At every moment between the loader's steps (each listing), what the schema serves
    # (and /readyz reports) is in the catalog: a client that sees the entity can search it.
    served_views, catalog = ServedViews(), Catalog()
    seen: list[tuple[list[str], list[str]]] = []

    class Watched(ClusterLoader):
        def list(self, kind: Any) -> list[dict[str, Any]]:
            entities = sorted(served_views.snapshot.entities.by_name)
            refs = sorted(hit["ref"] for hit in catalog.search("rider"))
            seen.append((entities, refs))
            return super().list(kind)

    loader = Watched(cluster.api, served_views, catalog, namespace=namespace)
    loader.refresh()
    cluster.create(rider_manifest(namespace), namespace)
    assert loader.refresh() is True
    loader.refresh()
    expected = sorted(f"rider.{name}" for name in RIDER)
    assert seen[-1] == (["rider"], expected)
    for entities, refs in seen:
        if entities:
            assert refs == expected, seen


def test_the_schema_is_published_when_the_catalog_cannot_be_listed(
    cluster: Cluster, namespace: str
) -> None:
    # Models cannot be listed (e.g. a ServiceAccount without that permission): GraphQL
    # still serves the manifests; the catalog keeps what it had.
    served_views, catalog = ServedViews(), Catalog()

    class NoModels(ClusterLoader):
        def list(self, kind: Any) -> list[dict[str, Any]]:
            if kind.kind == "Model":
                raise ApiException(status=403, reason="Forbidden")
            return super().list(kind)

    loader = NoModels(cluster.api, served_views, catalog, namespace=namespace)
    cluster.create(rider_manifest(namespace), namespace)
    assert loader.refresh() is True
    assert served_views.loaded and list(served_views.snapshot.entities.by_name) == ["rider"]
    assert catalog.search("rider") == []


def test_command_line_against_the_cluster(
    control_plane: ControlPlane, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    body = rider_manifest(namespace)
    args = [
        "--online",
        f"sqlite://{tmp_path / 'online.db'}",
        "--kubeconfig",
        str(control_plane.kubeconfig),
        "--namespace",
        namespace,
        "--refresh-seconds",
        "0.3",
    ]
    with command_line(args, tmp_path / "server.log") as url, httpx.Client(base_url=url) as http:
        wait_for(lambda: http.get("/readyz").status_code == 200, 30, "readiness")
        assert http.get("/readyz").json()["entities"] == []

        # The API reads the tables of the object it lists (its UID, the generation in
        # effect): the data is written for that object.
        created = cluster.create(body, namespace)
        write_riders(tmp_path / "online.db", FeatureView.from_body(created))
        wait_for(lambda: http.get("/readyz").json()["entities"] == ["rider"], 30, "the rider type")
        answer = http.post("/graphql", json={"query": '{ riders(ids: ["r0", "r9"]) { age } }'})
        assert answer.json() == {"data": {"riders": [{"age": str(2**60)}, None]}}
        hits = http.get("/catalog/search", params={"q": "rider"}).json()["results"]
        assert {hit["ref"] for hit in hits} == {f"rider.{name}" for name in RIDER}


GRAPHQL_FUZZ_EXAMPLES = 100
"""Per part: the schema's queries positive and negative; random variables, cheaper per
request, get three times as many. About 25 s on the shared CI machine;
`benchmarks/fuzz.py --examples N` runs the same drivers longer."""


def test_fuzzing_from_the_feature_api_schema_finds_no_server_error(tmp_path: Path) -> None:
    riders = rider_manifest()
    drivers = manifest("driver-trips", "driver", {"trips": "int64"})
    drivers["spec"]["entity"]["keyType"] = "int64"
    write_riders(tmp_path / "online.db", FeatureView.from_body(riders))
    objects = tmp_path / "objects.yaml"
    objects.write_text(yaml.safe_dump_all([riders, drivers]))
    args = ["--online", f"sqlite://{tmp_path / 'online.db'}", "--manifest", str(objects)]
    with command_line(args, tmp_path / "server.log") as url:
        # Issue 11's case first: an empty key answered 500 on the compiled-plan path.
        for query in ('{ rider(id: "") { age } }', '{ driver(id: "--5") { trips } }'):
            answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30)
            assert answer.status_code == 400, answer.text
            assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        report = fuzz_graphql(
            url, GRAPHQL_FUZZ_EXAMPLES, FUZZ_LOOKUPS, variable_examples=3 * GRAPHQL_FUZZ_EXAMPLES
        )
    print(json.dumps({"graphql fuzzing": report.summary()}))
    assert report.failures == [], "\n".join(report.failures[:10])
    assert report.requests >= 5 * GRAPHQL_FUZZ_EXAMPLES
    assert report.statuses[400] > 0 and report.statuses[200] > 0


FUZZ_LOOKUPS = [
    "query Q($k: ID!) { rider(id: $k) { age score } }",
    "query Q($k: ID!) { driver(id: $k) { trips } }",
    "query Q($k: [ID!]!) { drivers(ids: $k) { driver_id trips } }",
    'query Q($k: [ID!]!) { features(entity: "driver", keys: $k, names: ["trips"]) { key } }',
]
"""Typed, batched and generic lookups, for int64 and string keys, fed random variables."""
