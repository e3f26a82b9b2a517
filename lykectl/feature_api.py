"""The Feature API and Catalog API over HTTP, and their answers as table rows.

The HTTP calls are one function each; turning answers into rows is pure, so it is
tested on plain data.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lykectl.embedded import read_state
from lykectl.errors import CliError
from lykectl.http import call_json, kubeconfig_token
from lykectl.http import problem as http_problem

MISSING = "-"
SEARCH_LIMIT = 50

GENERIC_QUERY = (
    "query($entity: String!, $keys: [ID!]!, $names: [String!]!) "
    "{ features(entity: $entity, keys: $keys, names: $names) "
    "{ key values { name value } } }"
)


def api_url(given: str | None, workdir: Path) -> str:
    """--api-url, else the URL `lykectl up` recorded in the workdir's platform.json."""
    if given:
        return given.rstrip("/")
    platform = read_state(workdir.expanduser())
    if platform is None or not platform.feature_api_url:
        raise CliError("no Feature API URL: pass --api-url or start `lykectl up`")
    return platform.feature_api_url.rstrip("/")


def _call(url: str, body: Mapping[str, Any] | None = None) -> Any:
    """GET (or POST `body` as JSON) and the decoded JSON answer; failures as one line."""
    return call_json(url, body, "the Feature API", token=kubeconfig_token(None))[0]


def read_features(
    base: str, entity: str, keys: Sequence[str], names: Sequence[str]
) -> list[dict[str, Any] | None]:
    """The generic `features` query: one row per key, in key order; None for an unknown key."""
    answer = _call(
        f"{base}/graphql",
        {
            "query": GENERIC_QUERY,
            "variables": {"entity": entity, "keys": list(keys), "names": list(names)},
        },
    )
    problem = http_problem(answer)
    if problem is not None:
        raise CliError(problem)
    rows = (answer.get("data") or {}).get("features")
    if not isinstance(rows, list) or len(rows) != len(keys):
        raise CliError("the Feature API answered without one data.features row per key")
    return rows


def search_catalog(base: str, text: str, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"q": text, "limit": limit})
    answer = _call(f"{base}/catalog/search?{query}")
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise CliError("the Catalog API answered without results")
    return results


def feature_names(manifests: Sequence[Mapping[str, Any]], entity: str) -> list[str]:
    """Every feature the FeatureManifests define for `entity`, in definition order."""
    names: dict[str, None] = {}
    for body in manifests:
        spec = body.get("spec") or {}
        if (spec.get("entity") or {}).get("name") != entity:
            continue
        for feature in spec.get("features") or []:
            names.setdefault(str(feature["name"]), None)
    return list(names)


def by_key(keys: Sequence[str], rows: Sequence[Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """The answer as `{key, features}` per requested key; `features` is None for no row."""
    return [
        {
            "key": key,
            "features": None
            if row is None
            else {value["name"]: value["value"] for value in row.get("values") or []},
        }
        for key, row in zip(keys, rows, strict=True)
    ]


def _text(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def feature_rows(
    entries: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """KEY and a column per feature; a missing key or value shows as `-`."""
    headers = ["KEY", *(name.upper() for name in names)]
    cells = []
    for entry in entries:
        features = entry["features"] or {}
        cells.append([str(entry["key"]), *(_text(features.get(name)) for name in names)])
    return headers, cells


def search_rows(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """FEATURE, TYPE, MANIFEST (namespace/name), OWNER, DESCRIPTION."""
    headers = ["FEATURE", "TYPE", "MANIFEST", "OWNER", "DESCRIPTION"]
    cells = []
    for hit in results:
        manifest = hit.get("manifest") or MISSING
        if hit.get("namespace"):
            manifest = f"{hit['namespace']}/{manifest}"
        description = " ".join(str(hit.get("description") or "").split())
        cells.append(
            [
                str(hit.get("ref") or MISSING),
                str(hit.get("type") or MISSING),
                str(manifest),
                str(hit.get("owner") or MISSING),
                description or MISSING,
            ]
        )
    return headers, cells
