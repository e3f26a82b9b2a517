"""The feature catalog: full-text search over features, and each feature's lineage.

Rebuilt whole from the cluster's objects (FeatureManifests, Models, Deployments), so it
never disagrees with what `kubectl get lykeion` shows. Search runs on SQLite FTS5 with
bm25 ranking; a term `tag:pii`, `owner:team`, `entity:rider`, `feature:age`,
`description:...` or `manifest:...` searches that column only, and every term matches as
a prefix (`drop` finds `drop_offs_count`).

Lineage follows the operator's rules: a Model reads `entity.feature` from the manifests
of its own namespace, and a Deployment of the same namespace, family and segment serves
the Model when its version is live in `spec.versions` or is the `spec.shadow`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from lykeion import conditions
from lykeion.api.deployment import DeploymentSpec
from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.api.model import ModelSpec
from lykeion.features.reference import FeatureReference

Body = Mapping[str, Any]

# FTS5 columns, their bm25 weights (a hit in a name outranks one in a description) and
# the search prefixes that address them.
COLUMNS = ("feature", "entity", "description", "manifest_description", "tags", "owner", "manifest")
WEIGHTS = (10.0, 6.0, 3.0, 1.0, 4.0, 2.0, 1.0)
PREFIXES = {
    "feature": "feature",
    "name": "feature",
    "entity": "entity",
    "description": "{description manifest_description}",
    "tag": "tags",
    "tags": "tags",
    "owner": "owner",
    "manifest": "manifest",
}

_SCHEMA = f"""
CREATE TABLE feature (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    ref TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX feature_ref ON feature (ref, namespace);
CREATE VIRTUAL TABLE feature_text USING fts5(
    {", ".join(COLUMNS)}, tokenize = 'unicode61 remove_diacritics 2'
);
"""


def _meta(body: Body) -> tuple[str, str]:
    meta = body["metadata"]
    return meta.get("namespace", "default"), meta["name"]


def _ready(body: Body) -> bool:
    return conditions.is_true((body.get("status") or {}).get("conditions", []), "Ready")


@dataclass
class Lineage:
    """Models and Deployments indexed for the lookups a feature needs."""

    models: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    """(namespace, `entity.feature`) -> the Models reading it."""
    problems: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, models: Iterable[Body], deployments: Iterable[Body]) -> Lineage:
        lineage = cls()
        serving: dict[tuple[str, str, str], list[tuple[str, DeploymentSpec, Body]]] = {}
        for body in deployments:
            ns, name = _meta(body)
            try:
                spec = DeploymentSpec.model_validate(body["spec"])
            except (ValidationError, KeyError) as error:
                lineage.problems.append(f"Deployment {ns}/{name} left out: {error}")
                continue
            serving.setdefault((ns, spec.family, spec.segment), []).append((name, spec, body))
        for body in models:
            ns, name = _meta(body)
            try:
                model = ModelSpec.model_validate(body["spec"])
            except (ValidationError, KeyError) as error:
                lineage.problems.append(f"Model {ns}/{name} left out: {error}")
                continue
            candidates = serving.get((ns, model.family, model.segment), [])
            served_by = [
                _served(ns, deployment, spec, deployment_body, model.version)
                for deployment, spec, deployment_body in candidates
            ]
            for ref in model.input_features:
                reference = FeatureReference.parse(ref)
                lineage.models.setdefault((ns, reference.name), []).append(
                    {
                        "namespace": ns,
                        "name": name,
                        "family": model.family,
                        "segment": model.segment,
                        "version": model.version,
                        "expectsType": reference.type,
                        "ready": _ready(body),
                        "deployments": [d for d in served_by if d is not None],
                    }
                )
        return lineage


def _served(
    ns: str, name: str, spec: DeploymentSpec, body: Body, version: str
) -> dict[str, Any] | None:
    live = {v.version: v.traffic for v in spec.versions}
    if version in live:
        role, traffic = "live", live[version]
    elif spec.shadow == version:
        role, traffic = "shadow", 0
    else:
        return None
    return {
        "namespace": ns,
        "name": name,
        "role": role,
        "traffic": traffic,
        "backend": spec.backend,
        "endpoint": (body.get("status") or {}).get("endpoint"),
        "ready": _ready(body),
    }


def feature_documents(
    manifests: Iterable[Body], lineage: Lineage
) -> tuple[list[dict[str, Any]], list[str]]:
    """One catalog document per feature of every manifest (pure: no I/O)."""
    documents: list[dict[str, Any]] = []
    problems: list[str] = []
    for body in manifests:
        ns, name = _meta(body)
        try:
            spec = FeatureManifestSpec.model_validate(body["spec"])
        except (ValidationError, KeyError) as error:
            problems.append(f"FeatureManifest {ns}/{name} left out: {error}")
            continue
        status = body.get("status") or {}
        manifest = {
            "namespace": ns,
            "name": name,
            "description": spec.description,
            "owner": spec.owner,
            "tags": list(spec.tags),
            "ttl": spec.ttl,
            "schedule": spec.schedule,
            "ready": _ready(body),
        }
        runs = status.get("runs") or [{}]
        freshness = {
            "watermark": status.get("watermark"),
            "lastRunTime": status.get("lastRunTime"),
            "rowsWritten": status.get("rowsWritten"),
            # The latest run, successful or not: a failing pipeline is why data goes stale.
            "lastRunResult": runs[-1].get("result"),
        }
        for feature in spec.features:
            ref = f"{spec.entity.name}.{feature.name}"
            models = lineage.models.get((ns, ref), [])
            documents.append(
                {
                    "ref": ref,
                    "entity": spec.entity.name,
                    "feature": feature.name,
                    "type": feature.type,
                    "description": feature.description,
                    "joinKey": spec.entity.join_key,
                    "keyType": spec.entity.key_type,
                    "owner": spec.owner,
                    "tags": list(spec.tags),
                    "manifest": manifest,
                    "freshness": freshness,
                    "models": [
                        {
                            **model,
                            "typeMatches": model["expectsType"] in (None, feature.type),
                        }
                        for model in models
                    ],
                }
            )
    return documents, problems


def _phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"*'


def fts_query(text: str) -> str | None:
    """User words -> an FTS5 query: every term as a quoted prefix, `column:term` scoped,
    all terms required. None when nothing searchable is left."""
    parts = []
    for term in text.split():
        prefix, colon, value = term.partition(":")
        column = PREFIXES.get(prefix.lower()) if colon else None
        if column is None:
            value = term
        if not any(ch.isalnum() for ch in value):
            continue
        parts.append(f"{column} : {_phrase(value)}" if column else _phrase(value))
    return " AND ".join(parts) or None


def _connect() -> sqlite3.Connection:
    # One connection, shared by the worker threads under the catalog's lock.
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    connection.executescript(_SCHEMA)
    return connection


class Catalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db = _connect()
        self.problems: list[str] = []
        """Objects left out of the last rebuild, and why."""

    def rebuild(
        self, manifests: Iterable[Body], models: Iterable[Body], deployments: Iterable[Body]
    ) -> int:
        """Replace the catalog with these objects; returns the number of features."""
        lineage = Lineage.of(models, deployments)
        documents, problems = feature_documents(manifests, lineage)
        db = _connect()
        with db:
            for id_, doc in enumerate(documents, start=1):
                manifest = doc["manifest"]
                db.execute(
                    "INSERT INTO feature (id, namespace, ref, document) VALUES (?, ?, ?, ?)",
                    (id_, manifest["namespace"], doc["ref"], json.dumps(doc)),
                )
                db.execute(
                    f"INSERT INTO feature_text (rowid, {', '.join(COLUMNS)}) "
                    f"VALUES (?{', ?' * len(COLUMNS)})",
                    (
                        id_,
                        doc["feature"],
                        doc["entity"],
                        doc["description"] or "",
                        manifest["description"],
                        " ".join(doc["tags"]),
                        doc["owner"],
                        f"{manifest['namespace']} {manifest['name']}",
                    ),
                )
        with self._lock:
            old, self._db = self._db, db
            self.problems = lineage.problems + problems
        old.close()
        return len(documents)

    def search(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Features matching every term, best first (bm25; `score` grows with relevance)."""
        query = fts_query(text)
        if query is None:
            return []
        weights = ", ".join(str(w) for w in WEIGHTS)
        with self._lock:
            rows = self._db.execute(
                f"SELECT feature.document, bm25(feature_text, {weights}) AS rank "
                "FROM feature_text JOIN feature ON feature.id = feature_text.rowid "
                "WHERE feature_text MATCH ? ORDER BY rank, feature.ref LIMIT ?",
                (query, limit),
            ).fetchall()
        hits = []
        for document, rank in rows:
            doc = json.loads(document)
            hits.append(
                {
                    "ref": doc["ref"],
                    "namespace": doc["manifest"]["namespace"],
                    "manifest": doc["manifest"]["name"],
                    "entity": doc["entity"],
                    "feature": doc["feature"],
                    "type": doc["type"],
                    "description": doc["description"] or doc["manifest"]["description"],
                    "owner": doc["owner"],
                    "tags": doc["tags"],
                    "score": round(-rank, 6),
                }
            )
        return hits

    def feature(self, ref: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every definition of `entity.feature` (one per manifest), with its lineage."""
        sql = "SELECT document FROM feature WHERE ref = ?"
        params: tuple[str, ...] = (ref,)
        if namespace is not None:
            sql += " AND namespace = ?"
            params += (namespace,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY namespace, id", params).fetchall()
        return [json.loads(document) for (document,) in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
