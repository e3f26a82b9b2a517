"""Serve the Feature API (GraphQL) and the Catalog API over HTTP.

  python -m lykeion.feature_api --online sqlite:///var/lib/lykeion/online.db \\
      --kubeconfig ~/.kube/config --host 127.0.0.1 --port 8081

Feature definitions come from the cluster's FeatureManifests (re-listed every
--refresh-seconds), or from YAML files given with --manifest (no cluster needed).
Endpoints: POST/GET /graphql, GET /healthz, GET /readyz, GET /catalog/search?q=...,
GET /catalog/features/{entity}.{feature}.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from lykeion.access import ACCESS_MODES, reviewer
from lykeion.feature_api.app import create_app
from lykeion.feature_api.catalog import Catalog
from lykeion.feature_api.limits import Limits
from lykeion.feature_api.loader import ClusterLoader, views_of
from lykeion.feature_api.served_views import ServedViews
from lykeion.stores.online.base import OnlineStore


def open_online_store(url: str) -> OnlineStore:
    """`sqlite:///abs/path.db` (or `sqlite://relative.db`: what follows `sqlite://` is the
    path), or `bigtable://project/instance` (what the chart passes with
    `stores.online.type: bigtable`). Raises `SystemExit` naming both for anything else."""
    scheme, sep, rest = url.partition("://")
    if scheme == "sqlite" and sep and rest:
        from lykeion.stores.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(Path(rest))
    project, _, instance = rest.strip("/").partition("/")
    if scheme == "bigtable" and sep and project and instance:
        from lykeion.stores.online.bigtable import BigtableOnlineStore

        return BigtableOnlineStore(project, instance)
    raise SystemExit(
        f"--online {url!r}: supported are sqlite:///path/to/online.db and "
        "bigtable://project/instance"
    )


def load_files(paths: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """Lykeion objects from YAML files, by kind."""
    by_kind: dict[str, list[dict[str, Any]]] = {
        "FeatureManifest": [],
        "Model": [],
        "Deployment": [],
    }
    for path in paths:
        for body in yaml.safe_load_all(path.read_text()):
            if isinstance(body, dict) and body.get("kind") in by_kind:
                body.setdefault("metadata", {}).setdefault("namespace", "default")
                by_kind[body["kind"]].append(body)
    return by_kind


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog="python -m lykeion.feature_api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--online",
        required=True,
        help="online store URL: sqlite:///path.db or bigtable://project/instance",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--kubeconfig", type=Path, help="default: in-cluster, then ~/.kube/config")
    source.add_argument(
        "--manifest",
        type=Path,
        action="append",
        default=[],
        help="YAML file of FeatureManifests (and Models, Deployments); repeatable; no cluster",
    )
    parser.add_argument("--namespace", help="serve one namespace's FeatureManifests (default: all)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--refresh-seconds", type=float, default=10.0)
    parser.add_argument("--max-depth", type=int, default=defaults.max_depth)
    parser.add_argument("--max-keys", type=int, default=defaults.max_keys)
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument(
        "--document-cache-size",
        type=int,
        default=defaults.document_cache_size,
        help="validated documents kept by query text; 0 turns the cache off",
    )
    parser.add_argument("--no-catalog", action="store_true", help="serve GraphQL only")
    parser.add_argument(
        "--access",
        choices=ACCESS_MODES,
        default="off",
        help="kubernetes: callers need a bearer token (TokenReview) and get on "
        "featuremanifests/data of each manifest read (SubjectAccessReview); off: no checks",
    )
    parser.add_argument(
        "--access-kubeconfig",
        type=Path,
        help="credentials for the reviews (default: --kubeconfig, else the pod's ServiceAccount)",
    )
    parser.add_argument(
        "--access-ttl", type=float, default=10.0, help="seconds a review's answer is reused"
    )
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    limits = Limits(
        max_depth=args.max_depth,
        max_keys=args.max_keys,
        max_body_bytes=args.max_body_bytes,
        document_cache_size=args.document_cache_size,
    )
    store = open_online_store(args.online)
    served_views = ServedViews(limits=limits)
    catalog = None if args.no_catalog else Catalog()
    loader: ClusterLoader | None = None
    if args.manifest:
        objects = {
            kind: [b for b in bodies if args.namespace in (None, b["metadata"]["namespace"])]
            for kind, bodies in load_files(args.manifest).items()
        }
        served_views.update(views_of(objects["FeatureManifest"]))
        if catalog is not None:
            catalog.rebuild(objects["FeatureManifest"], objects["Model"], objects["Deployment"])
    else:
        from lykeion.kube import api_client

        loader = ClusterLoader(
            api_client(args.kubeconfig),
            served_views,
            catalog,
            namespace=args.namespace,
            interval=args.refresh_seconds,
        )
        loader.start()
    access = reviewer(
        args.access, args.access_kubeconfig or args.kubeconfig, os.environ, args.access_ttl
    )
    app = create_app(store, served_views, catalog, access)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log
    )
    # What start-up allocated (schema, manifests, modules) lives as long as the process:
    # out of the collector's sight, a full collection in the middle of a request is short.
    gc.freeze()
    try:
        uvicorn.Server(config).run()
    finally:
        if loader is not None:
            loader.stop()
        store.close()


if __name__ == "__main__":
    main()
