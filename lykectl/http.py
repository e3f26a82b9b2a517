"""JSON over HTTP to the platform's own servers (Feature API, model endpoints): failures
become one-line CliErrors naming the service and its own error message."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import Any

from lykectl.errors import CliError

REQUEST_TIMEOUT = 30.0


def problem(answer: Any) -> str | None:
    """The first error message of a GraphQL (`errors`) or plain (`error`) answer."""
    if not isinstance(answer, dict):
        return None
    errors = answer.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        return str(first.get("message") if isinstance(first, dict) else first)
    if answer.get("error"):
        return str(answer["error"])
    return None


def call_json(
    url: str, body: Mapping[str, Any] | None = None, service: str = "the server"
) -> tuple[Any, Message]:
    """GET (or POST `body` as JSON): the decoded JSON answer and the response headers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", "accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as answer:
            payload, headers = answer.read(), answer.headers
    except urllib.error.HTTPError as error:
        try:
            said = problem(json.loads(error.read()))
        except ValueError:
            said = None
        raise CliError(f"{service} answered {error.code}: {said or error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CliError(f"cannot reach {service} at {url}: {reason}") from None
    try:
        return json.loads(payload), headers
    except ValueError:
        raise CliError(f"{service} at {url} did not answer JSON") from None
