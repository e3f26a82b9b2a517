"""HTTP routes of the Catalog API, served next to the Feature API."""

from __future__ import annotations

import re

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lykeion.features.catalog import Catalog

FEATURE_REF = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
MAX_RESULTS = 100


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status)


def catalog_routes(catalog: Catalog) -> list[BaseRoute]:
    async def search(request: Request) -> Response:
        text = request.query_params.get("q", "").strip()
        if not text:
            return _error("q is required: words to search, e.g. ?q=tag:pii rider", 400)
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            return _error("limit must be an integer", 400)
        if not 1 <= limit <= MAX_RESULTS:
            return _error(f"limit must be between 1 and {MAX_RESULTS}", 400)
        results = await to_thread.run_sync(catalog.search, text, limit)
        return JSONResponse({"query": text, "results": results})

    async def feature(request: Request) -> Response:
        ref = request.path_params["ref"]
        if not FEATURE_REF.match(ref):
            return _error(f"{ref!r} is not a feature reference entity.feature", 400)
        namespace = request.query_params.get("namespace")
        definitions = await to_thread.run_sync(catalog.feature, ref, namespace)
        if not definitions:
            where = f" in namespace {namespace}" if namespace else ""
            return _error(f"no FeatureManifest defines {ref}{where}", 404)
        return JSONResponse({"ref": ref, "definitions": definitions})

    return [
        Route("/catalog/search", search, methods=["GET"]),
        Route("/catalog/features/{ref}", feature, methods=["GET"]),
    ]
