"""HTTP routes of the Catalog API, served next to the Feature API (errors: `{"error"}`)."""

from __future__ import annotations

import asyncio
import re

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lykeion.access import (
    SEE_MANIFEST,
    AccessReviewer,
    Caller,
    ReviewUnavailable,
    Right,
    Unauthenticated,
    bearer_token,
)
from lykeion.feature_api.catalog import Catalog

FEATURE_REF = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
MAX_RESULTS = 100


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status)


async def _visible(
    access: AccessReviewer | None, caller: Caller | None, manifests: list[tuple[str, str]]
) -> list[bool]:
    """Per (namespace, name): may the caller `get` that FeatureManifest?"""
    if access is None or caller is None:
        return [True for _ in manifests]
    # One review per distinct manifest, sent together (answers are cached afterwards).
    distinct = list(dict.fromkeys(manifests))
    answers = await asyncio.gather(
        *(access.allowed(caller, Right.of(SEE_MANIFEST, ns, name)) for ns, name in distinct)
    )
    allowed = dict(zip(distinct, answers, strict=True))
    return [allowed[manifest] for manifest in manifests]


def catalog_routes(catalog: Catalog, access: AccessReviewer | None = None) -> list[BaseRoute]:
    """`/catalog/search` and `/catalog/features/{ref}`; with `access`, a bearer token is
    required and only FeatureManifests the caller may `get` are listed."""

    async def caller_of(request: Request) -> Caller | None:
        if access is None:
            return None
        return await access.authenticate(bearer_token(request.headers.get("authorization")))

    async def search(request: Request) -> Response:
        try:
            return await _search(request, await caller_of(request))
        except (Unauthenticated, ReviewUnavailable) as error:
            return _error(str(error), error.status)

    async def feature(request: Request) -> Response:
        try:
            return await _feature(request, await caller_of(request))
        except (Unauthenticated, ReviewUnavailable) as error:
            return _error(str(error), error.status)

    async def _search(request: Request, caller: Caller | None) -> Response:
        text = request.query_params.get("q", "").strip()
        if not text:
            return _error("q is required: words to search, e.g. ?q=tag:pii rider", 400)
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            return _error("limit must be an integer", 400)
        if not 1 <= limit <= MAX_RESULTS:
            return _error(f"limit must be between 1 and {MAX_RESULTS}", 400)
        # Hits the caller may not see are dropped after the search: ask for more.
        wanted = limit if access is None else MAX_RESULTS
        results = await to_thread.run_sync(catalog.search, text, wanted)
        seen = await _visible(access, caller, [(r["namespace"], r["manifest"]) for r in results])
        results = [r for r, ok in zip(results, seen, strict=True) if ok][:limit]
        return JSONResponse({"query": text, "results": results})

    async def _feature(request: Request, caller: Caller | None) -> Response:
        ref = request.path_params["ref"]
        if not FEATURE_REF.match(ref):
            return _error(f"{ref!r} is not a feature reference entity.feature", 400)
        namespace = request.query_params.get("namespace")
        definitions = await to_thread.run_sync(catalog.feature, ref, namespace)
        manifests = [(d["manifest"]["namespace"], d["manifest"]["name"]) for d in definitions]
        seen = await _visible(access, caller, manifests)
        definitions = [d for d, ok in zip(definitions, seen, strict=True) if ok]
        if not definitions:
            where = f" in namespace {namespace}" if namespace else ""
            return _error(f"no FeatureManifest defines {ref}{where}", 404)
        return JSONResponse({"ref": ref, "definitions": definitions})

    return [
        Route("/catalog/search", search, methods=["GET"]),
        Route("/catalog/features/{ref}", feature, methods=["GET"]),
    ]
