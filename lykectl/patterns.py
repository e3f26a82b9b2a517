"""Human sentences for the API models' string patterns, so that a user never reads a regex.

`lykectl.errors.validation_message` turns pydantic's `string_pattern_mismatch` into
`spec.authors[1]: 'not-an-email' is not valid: an e-mail address, e.g. ds@example.com`.
Every pattern of the API models has an entry here (`tests/unit/test_lykectl.py` walks
their JSON schemas and checks each example against its own pattern).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from lykeion.api.common import (
    CAMEL_REASON,
    CRON,
    DNS_LABEL,
    DURATION,
    EMAIL,
    FEATURE_REF,
    IDENTIFIER,
    QUANTITY,
    VERSION_PATTERN,
)
from lykeion.api.model import DNS_SUBDOMAIN, SOURCE_URL


class Form(NamedTuple):
    what: str
    """What a valid value is, as a noun phrase."""
    example: str
    """A valid value."""


PATTERNS: Final[dict[str, Form]] = {
    DNS_LABEL: Form(
        "lowercase letters, digits and '-', starting with a letter and not ending with '-'",
        "forward",
    ),
    IDENTIFIER: Form("lowercase letters, digits and '_', starting with a letter", "rider_id"),
    VERSION_PATTERN: Form("one to three numbers separated by dots", "1.0"),
    EMAIL: Form("an e-mail address", "ds@example.com"),
    DURATION: Form("a whole number followed by s, m, h or d", "30d"),
    CRON: Form(
        "a cron schedule of five fields, or @hourly, @daily, @weekly, @monthly, @yearly",
        "0 * * * *",
    ),
    QUANTITY: Form("a Kubernetes quantity: a number with an optional unit", "500m"),
    CAMEL_REASON: Form("a CamelCase word", "FeaturesNotDefined"),
    FEATURE_REF: Form(
        "entity.feature, optionally with the type the model expects (entity.feature:type)",
        "rider.age",
    ),
    SOURCE_URL: Form(
        "<git-url>#<subdirectory>@<40-hex commit SHA>, or file://<path>",
        "git@github.com:org/projects.git#mlprojects/forward@0123456789abcdef0123456789abcdef01234567",
    ),
    DNS_SUBDOMAIN: Form("a DNS subdomain: lowercase letters, digits, '-' and '.'", "git-ssh-key"),
    r"^[a-z0-9][-a-z0-9_.]*$": Form(
        "lowercase letters, digits, '-', '_' and '.', starting with a letter or digit",
        "team-growth",
    ),
    r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_$-]+$": Form(
        "a BigQuery table as project.dataset.table", "my-project.rides.trips"
    ),
    r"^[A-Za-z0-9_.-]+$": Form("letters, digits, '_', '.' and '-'", "main"),
}

FIELD_EXAMPLES: Final[dict[str, str]] = {"metric": "roc_auc", "entryPoint": "main"}
"""Examples that fit a field better than its pattern's generic one."""


def pattern_sentence(pattern: str, value: object, field: str | None = None) -> str:
    """Why `value` does not fit `pattern`, in words, with a valid example."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    form = PATTERNS.get(pattern)
    if form is None:
        return f"{shown} is not valid here"
    example = FIELD_EXAMPLES.get(field or "", form.example)
    return f"{shown} is not valid: expected {form.what}, e.g. {example}"
