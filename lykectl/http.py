"""JSON over HTTP to the platform's own servers (Feature API, model endpoints): failures
become one-line CliErrors naming the service and its own error message."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import Any

import yaml

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
    status = answer.get("status")
    if isinstance(status, dict) and status.get("info"):
        return str(status["info"])  # Seldon v1's SeldonMessage status
    return None


def kubeconfig_token(path: str | None) -> str | None:
    """The bearer token of the kubeconfig's current user, if it has one: what the Feature
    API and model endpoints review when their access control is on (`lykectl up`'s
    kubeconfig carries the embedded control plane's token)."""
    from lykectl.client import default_kubeconfig

    try:
        config = yaml.safe_load(Path(path or default_kubeconfig()).read_text()) or {}
        current = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == current)
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError):
        return None
    token = user.get("token")
    return str(token) if token else None


def call_json(
    url: str,
    body: Mapping[str, Any] | None = None,
    service: str = "the server",
    token: str | None = None,
) -> tuple[Any, Message]:
    """GET (or POST `body` as JSON): the decoded JSON answer and the response headers;
    `token` goes as `Authorization: Bearer`."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", "accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
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
