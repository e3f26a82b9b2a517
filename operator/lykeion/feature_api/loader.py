"""Keeps the Feature API in step with the cluster: FeatureManifests -> schema, and the catalog.

A full listing every `interval` seconds rather than a watch: the schema changes rarely,
a listing needs no resume logic, and a missed event can never leave the schema stale for
longer than one interval. Each listing is paged and every call has a timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from lykeion import GROUP, VERSION
from lykeion.api.kinds import DEPLOYMENT, FEATURE_MANIFEST, MODEL, Kind
from lykeion.feature_api.catalog import Catalog
from lykeion.feature_api.served_views import ServedViews
from lykeion.features.view import FeatureView

log = logging.getLogger(__name__)

MAX_PAGES = 1000


def views_of(manifests: list[dict[str, Any]]) -> list[FeatureView]:
    """The FeatureViews of valid manifests; an invalid one is logged and left out."""
    views = []
    for body in manifests:
        try:
            views.append(FeatureView.from_body(body))
        except (ValidationError, KeyError, ValueError) as error:
            meta = body.get("metadata", {})
            log.warning(
                "FeatureManifest %s/%s left out of the schema: %s",
                meta.get("namespace"),
                meta.get("name"),
                error,
            )
    return views


class ClusterLoader:
    def __init__(
        self,
        api: client.ApiClient,
        served_views: ServedViews,
        catalog: Catalog | None = None,
        namespace: str | None = None,
        interval: float = 10.0,
        page_size: int = 500,
        request_timeout: float = 10.0,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.served_views = served_views
        self.catalog = catalog
        self.namespace = namespace
        self.interval = interval
        self.page_size = page_size
        self.request_timeout = request_timeout
        self._catalog_versions: tuple[str, ...] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def list(self, kind: Kind) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            options: dict[str, Any] = {
                "limit": self.page_size,
                "_request_timeout": self.request_timeout,
            }
            if token:
                options["_continue"] = token
            page: Any  # the client is typed `object` (kubernetes 37) or untyped (36)
            if self.namespace:
                page = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, kind.plural, **options
                )
            else:
                page = self.custom.list_cluster_custom_object(
                    GROUP, VERSION, kind.plural, **options
                )
            for item in page["items"]:
                item.setdefault("kind", kind.kind)
            items += page["items"]
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items
        raise RuntimeError(f"listing {kind.plural} did not end after {MAX_PAGES} pages")

    def refresh(self) -> bool:
        """One listing; returns whether the schema changed.

        The catalog is rebuilt before the schema is published: a feature the schema (and
        `/readyz`) serves is already in the catalog, never the other way round for a moment
        while the Models and Deployments are still being listed. When the catalog's part
        fails (Models or Deployments cannot be listed), the last catalog is kept, the
        failure logged, and the schema is published all the same: GraphQL does not wait on
        the catalog. Raises what listing the FeatureManifests raises."""
        manifests = self.list(FEATURE_MANIFEST)
        if self.catalog is not None:
            try:
                self._rebuild_catalog(self.catalog, manifests)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
                log.warning("listing Models and Deployments failed, keeping the last catalog: %s",
                            error)  # fmt: skip
        changed = self.served_views.update(views_of(manifests))
        if changed:
            log.info("feature API schema now serves %d FeatureManifest(s)", len(manifests))
        return changed

    def _rebuild_catalog(self, catalog: Catalog, manifests: Sequence[dict[str, Any]]) -> None:
        models, deployments = self.list(MODEL), self.list(DEPLOYMENT)
        # resourceVersion moves on every change, status included (freshness, readiness).
        versions = tuple(
            f"{body['kind']}/{body['metadata'].get('uid')}/"
            f"{body['metadata'].get('resourceVersion')}"
            for body in (*manifests, *models, *deployments)
        )
        if versions != self._catalog_versions:
            count = catalog.rebuild(manifests, models, deployments)
            self._catalog_versions = versions
            for problem in catalog.problems:
                log.warning("catalog: %s", problem)
            log.info("catalog rebuilt: %d feature(s)", count)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
                log.warning("listing Lykeion objects failed, keeping the last schema: %s", error)
            except Exception:  # a dead loader thread would leave the schema stale, silently
                log.exception("refreshing the feature API failed, keeping the last schema")
            self._stop.wait(self.interval)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="feature-api-loader", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
