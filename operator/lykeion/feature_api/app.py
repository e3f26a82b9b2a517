"""The Feature API's ASGI app: GraphQL over HTTP (POST and GET), health, readiness, catalog."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

import orjson
from anyio import to_thread
from graphql import ExecutionResult, GraphQLError, execute
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from lykeion import access as lykeion_access
from lykeion.access import AccessReviewer, Caller, bearer_token
from lykeion.feature_api.catalog import Catalog
from lykeion.feature_api.catalog_routes import catalog_routes
from lykeion.feature_api.documents import InvalidDocument, PersistedQueries
from lykeion.feature_api.errors import (
    BadUserInput,
    FeatureApiError,
    PayloadTooLarge,
    PersistedQueryNotFound,
    ReviewUnavailable,
    Unauthenticated,
    status_of,
)
from lykeion.feature_api.reads import RequestContext
from lykeion.feature_api.served_views import ServedViews
from lykeion.request_body import BodyTooLarge, read_body
from lykeion.stores.online.base import OnlineStore, StoreUnavailable

log = logging.getLogger(__name__)

NO_CACHE = {"cache-control": "private, no-cache, must-revalidate"}


def json_response(
    payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps(payload)
    return Response(body, status, headers, media_type="application/json")


def errors_response(
    errors: Sequence[Mapping[str, Any]], status: int, headers: dict[str, str] | None = None
) -> Response:
    return json_response({"errors": errors}, status, headers)


@dataclass(frozen=True)
class GraphQLRequest:
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    persisted_hash: str | None

    @classmethod
    def from_params(cls, params: Any) -> GraphQLRequest:
        if not isinstance(params, dict):
            raise BadUserInput("the request body must be a JSON object")
        query, variables = params.get("query"), params.get("variables")
        operation_name, extensions = params.get("operationName"), params.get("extensions")
        if query is not None and not isinstance(query, str):
            raise BadUserInput("query must be a string")
        if variables is not None and not isinstance(variables, dict):
            raise BadUserInput("variables must be an object")
        if operation_name is not None and not isinstance(operation_name, str):
            raise BadUserInput("operationName must be a string")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        sha256 = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        if persisted is not None and not isinstance(sha256, str):
            raise BadUserInput("extensions.persistedQuery.sha256Hash must be a string")
        return cls(query, variables, operation_name, sha256)


def _json_param(request: Request, name: str) -> Any:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise BadUserInput(f"{name} is not valid JSON") from None


async def parse_request(request: Request, max_bytes: int) -> GraphQLRequest:
    if request.method == "GET":
        return GraphQLRequest.from_params(
            {
                "query": request.query_params.get("query"),
                "operationName": request.query_params.get("operationName"),
                "variables": _json_param(request, "variables"),
                "extensions": _json_param(request, "extensions"),
            }
        )
    try:
        body = await read_body(request, max_bytes)
    except BodyTooLarge as error:
        raise PayloadTooLarge(str(error)) from None
    try:
        params = orjson.loads(body)
    except ValueError:
        raise BadUserInput("the request body is not valid JSON") from None
    return GraphQLRequest.from_params(params)


def _document_errors(error: InvalidDocument) -> list[dict[str, Any]]:
    formatted = []
    for item in error.errors:
        entry: dict[str, Any] = dict(item.formatted)
        entry["extensions"] = {"code": error.code, **(entry.get("extensions") or {})}
        formatted.append(entry)
    return formatted


def _log_unexpected(errors: list[GraphQLError]) -> None:
    for error in errors:
        cause = error.original_error
        if cause is not None and not isinstance(cause, FeatureApiError):
            log.error("resolver failed at %s", error.path, exc_info=cause)


async def authenticate(access: AccessReviewer | None, request: Request) -> Caller | None:
    """The caller of the request's bearer token (None when access control is off)."""
    if access is None:
        return None
    try:
        return await access.authenticate(bearer_token(request.headers.get("authorization")))
    except lykeion_access.Unauthenticated as error:
        raise Unauthenticated(str(error)) from None
    except lykeion_access.ReviewUnavailable as error:
        raise ReviewUnavailable(str(error)) from None


CHALLENGE = {"www-authenticate": 'Bearer realm="lykeion"'}


class GraphQLEndpoint:
    def __init__(
        self, store: OnlineStore, served_views: ServedViews, access: AccessReviewer | None = None
    ) -> None:
        self.store = store
        self.served_views = served_views
        self.limits = served_views.limits
        self.persisted = PersistedQueries(self.limits.persisted_queries)
        self.access = access

    def context(self, caller: Caller | None) -> RequestContext:
        return RequestContext(self.store, self.limits.max_keys, access=self.access, caller=caller)

    async def handle(self, request: Request) -> Response:
        try:
            caller = await authenticate(self.access, request)
            graphql_request = await parse_request(request, self.limits.max_body_bytes)
            return await self.run(graphql_request, caller)
        except Unauthenticated as error:
            return errors_response([error.formatted()], error.status, CHALLENGE)
        except PersistedQueryNotFound as error:
            return errors_response([error.formatted()], error.status, NO_CACHE)
        except FeatureApiError as error:
            return errors_response([error.formatted()], error.status)
        except InvalidDocument as error:
            return errors_response(_document_errors(error), 400)

    async def run(self, request: GraphQLRequest, caller: Caller | None = None) -> Response:
        snapshot = self.served_views.snapshot
        query = request.query
        if request.persisted_hash is not None:
            query = self.persisted.resolve(query, request.persisted_hash)
        if not query:
            raise BadUserInput("the request has no query")
        prepared = snapshot.documents.get(query)
        if request.persisted_hash is not None:
            self.persisted.remember(query, request.persisted_hash)
        if prepared.plan is not None:
            data = await prepared.plan.run(
                self.context(caller), request.variables, request.operation_name
            )
            if data is not None:
                return json_response({"data": data})
        outcome = execute(
            snapshot.schema,
            prepared.document,
            context_value=self.context(caller),
            variable_values=request.variables,
            operation_name=request.operation_name,
        )
        result: ExecutionResult = await outcome if isawaitable(outcome) else outcome
        if not result.errors:
            return json_response({"data": result.data})
        errors = [error.formatted for error in result.errors]
        status = status_of(result.errors)
        if status is not None and status != 200:
            return errors_response(errors, status)
        if result.data is None:
            # Variables that do not coerce, an unknown operation name: the request is wrong.
            return errors_response(errors, 400)
        _log_unexpected(result.errors)
        return json_response({"data": result.data, "errors": errors})


def create_app(
    store: OnlineStore,
    served_views: ServedViews,
    catalog: Catalog | None = None,
    access: AccessReviewer | None = None,
) -> Starlette:
    """The ASGI app; `served_views.update(views)` changes the schema while it serves.

    With `access`, GraphQL and the catalog need a bearer token the cluster accepts (401
    otherwise); features are read only from FeatureManifests the caller may
    `get featuremanifests/data` of (403 naming the manifest), and the catalog shows only
    manifests the caller may `get`. Health and readiness stay open."""
    endpoint = GraphQLEndpoint(store, served_views, access)

    async def healthz(_: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(_: Request) -> Response:
        if not served_views.loaded:
            return json_response(
                {"status": "not ready", "reason": "feature definitions not loaded yet"}, 503
            )
        try:
            await to_thread.run_sync(store.ping)
        except StoreUnavailable as error:
            return json_response(
                {"status": "not ready", "reason": f"online store unavailable: {error}"}, 503
            )
        entities = sorted(served_views.snapshot.entities.by_name)
        return json_response({"status": "ready", "entities": entities})

    routes: list[BaseRoute] = [
        Route("/graphql", endpoint.handle, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if catalog is not None:
        routes += catalog_routes(catalog, access)
    app = Starlette(routes=routes)
    app.state.served_views = served_views
    app.state.store = store
    app.state.graphql = endpoint
    app.state.catalog = catalog
    return app
