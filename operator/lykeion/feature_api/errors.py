"""The errors the Feature API answers with: a GraphQL error code and the HTTP status it maps to.

GraphQL puts resolver failures next to partial data with HTTP 200. Here a request that
names an unknown entity, asks for too many keys or finds the store down is answered as a
whole, with the status a client or load balancer can act on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import GraphQLError


class FeatureApiError(Exception):
    """A request-level failure with a stable `extensions.code` and an HTTP status."""

    code = "BAD_REQUEST"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def extensions(self) -> dict[str, Any]:
        """Read by graphql-core when it wraps this error into a located GraphQLError."""
        return {"code": self.code}

    def formatted(self) -> dict[str, Any]:
        return {"message": self.message, "extensions": self.extensions}


class BadUserInput(FeatureApiError):
    code = "BAD_USER_INPUT"


class UnknownEntity(FeatureApiError):
    code = "UNKNOWN_ENTITY"


class UnknownFeature(FeatureApiError):
    code = "UNKNOWN_FEATURE"


class TooManyKeys(FeatureApiError):
    code = "TOO_MANY_KEYS"


class PayloadTooLarge(FeatureApiError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class PersistedQueryNotFound(FeatureApiError):
    """Apollo's APQ convention: the client resends the hash together with the query.

    Answered with 200 and `no-cache` as Apollo Server does, so that intermediaries never
    cache the miss and clients see a GraphQL error rather than a transport failure."""

    code = "PERSISTED_QUERY_NOT_FOUND"
    status = 200

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotFound")


class Unauthenticated(FeatureApiError):
    """No bearer token, or one the cluster does not accept (`lykeion.access`)."""

    code = "UNAUTHENTICATED"
    status = 401


class AccessDenied(FeatureApiError):
    """The caller may not read a FeatureManifest's features (`get featuremanifests/data`)."""

    code = "FORBIDDEN"
    status = 403


class ReviewUnavailable(FeatureApiError):
    """The API server did not answer a TokenReview or SubjectAccessReview."""

    code = "ACCESS_REVIEW_UNAVAILABLE"
    status = 503


class StoreDown(FeatureApiError):
    code = "STORE_UNAVAILABLE"
    status = 503

    def __init__(self, reason: object) -> None:
        super().__init__(f"online store unavailable: {reason}")


def status_of(errors: Iterable[GraphQLError]) -> int | None:
    """The HTTP status the execution errors call for; None leaves GraphQL's 200."""
    statuses = [
        error.original_error.status
        for error in errors
        if isinstance(error.original_error, FeatureApiError)
    ]
    if not statuses:
        return None
    # The store being down outranks the caller's mistakes: retrying is what helps.
    return max(statuses)
