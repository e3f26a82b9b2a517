"""Every failure becomes one `error: ...` line on stderr and exit code 1, never a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from typer.core import TyperGroup

from lykectl.patterns import pattern_sentence


class CliError(Exception):
    """A failure the user can act on; its text is the whole report."""


def location(prefix: str, loc: Sequence[int | str]) -> str:
    """`spec` + ('inputFeatures', 1) -> `spec.inputFeatures[1]`, as the API server names fields."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path or "object"


def validation_message(error: ValidationError, prefix: str = "spec") -> str:
    """All of pydantic's findings on one line, each naming its field; a pattern mismatch
    in words with a valid example (`spec.version: '1.x' is not valid: expected one to
    three numbers separated by dots, e.g. 1.0`), never the regular expression."""
    findings = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch":
            fields = [part for part in item["loc"] if isinstance(part, str)]
            pattern = str((item.get("ctx") or {}).get("pattern", ""))
            message = pattern_sentence(pattern, item["input"], fields[-1] if fields else None)
        findings.append(f"{location(prefix, item['loc'])}: {message}")
    return "; ".join(findings)


def api_body(error: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def api_message(error: ApiException) -> str:
    """The API server's own `message` (CEL and schema errors), else status and reason."""
    message = api_body(error).get("message")
    if message:
        return str(message)
    return f"the API server answered {error.status} {error.reason}".strip()


def fail(message: str) -> NoReturn:
    one_line = " ".join(line.strip() for line in message.splitlines() if line.strip())
    typer.echo(f"error: {one_line}", err=True)
    raise typer.Exit(1)


class ReportingGroup(TyperGroup):
    """The root command group: turns known failures into one line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as error:
            fail(str(error))
        except ValidationError as error:
            fail(validation_message(error, prefix=""))
        except ApiException as error:
            fail(api_message(error))
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # --help, usage errors and exits: typer reports them itself
        except Exception as error:
            # A bug in lykectl: still one line, unless the traceback is asked for.
            if os.environ.get("LYKECTL_DEBUG"):
                raise
            fail(
                f"internal error: {type(error).__name__}: {error} "
                "(set LYKECTL_DEBUG=1 for the traceback)"
            )
