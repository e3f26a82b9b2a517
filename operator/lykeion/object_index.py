"""What the operator knows of every Lykeion object, and who depends on whom.

Filled by a full listing at start-up and kept current by watch events. `observe` and
`forget` return the objects whose status may have changed as a consequence, so that a
FeatureManifest that appears re-reconciles exactly the Models that were waiting for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lykeion import conditions
from lykeion.features.reference import feature_name


class Key(NamedTuple):
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class FamilyInfo:
    deleting: bool


@dataclass(frozen=True)
class ModelInfo:
    family: str
    segment: str
    version: str
    features: tuple[str, ...]
    ready: bool


@dataclass(frozen=True)
class DeploymentInfo:
    family: str
    segment: str
    versions: tuple[str, ...]


@dataclass
class ObjectIndex:
    """The operator's index of the Lykeion objects it watches, by (namespace, name) per kind,
    and the queries its status builders ask of it (who defines a feature, which Model a
    Deployment names, ...)."""

    families: dict[tuple[str, str], FamilyInfo] = field(default_factory=dict)
    manifests: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    manifest_specs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """The full spec of each manifest, for work that needs the definitions (training)."""
    manifest_tables: dict[tuple[str, str], tuple[str, int | None]] = field(default_factory=dict)
    """(uid, generation in effect) of each manifest: which tables its readers read."""
    models: dict[tuple[str, str], ModelInfo] = field(default_factory=dict)
    deployments: dict[tuple[str, str], DeploymentInfo] = field(default_factory=dict)

    # -- updates ---------------------------------------------------------------------------

    def observe(self, body: Mapping[str, Any]) -> set[Key]:
        """Record an object's current state; return the keys that depend on what changed."""
        kind = body["kind"]
        meta = body["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        spec = body.get("spec") or {}
        if kind == "ModelFamily":
            return self._set_family(ns, name, FamilyInfo(bool(meta.get("deletionTimestamp"))))
        if kind == "FeatureManifest":
            entity = spec.get("entity", {}).get("name", "")
            defines = {f"{entity}.{f['name']}": f["type"] for f in spec.get("features", [])}
            self.manifest_specs[(ns, name)] = spec
            tables = (
                str(meta.get("uid") or ""),
                (body.get("status") or {}).get("materializedGeneration"),
            )
            switched = self.manifest_tables.get((ns, name)) != tables
            self.manifest_tables[(ns, name)] = tables
            return self._set_manifest(ns, name, defines, switched)
        if kind == "Model":
            info = ModelInfo(
                family=spec.get("family", ""),
                segment=spec.get("segment", ""),
                version=spec.get("version", ""),
                features=tuple(spec.get("inputFeatures", [])),
                ready=conditions.is_true((body.get("status") or {}).get("conditions", []), "Ready"),
            )
            return self._set_model(ns, name, info)
        if kind == "Deployment":
            info_d = DeploymentInfo(
                family=spec.get("family", ""),
                segment=spec.get("segment", ""),
                versions=tuple(v["version"] for v in spec.get("versions", [])),
            )
            return self._set_deployment(ns, name, info_d)
        raise ValueError(f"not a Lykeion kind: {kind}")

    def forget(self, kind: str, namespace: str, name: str) -> set[Key]:
        """Drop a deleted object; return the keys that depended on it."""
        if kind == "ModelFamily":
            return self._set_family(namespace, name, None)
        if kind == "FeatureManifest":
            self.manifest_specs.pop((namespace, name), None)
            self.manifest_tables.pop((namespace, name), None)
            return self._set_manifest(namespace, name, None)
        if kind == "Model":
            return self._set_model(namespace, name, None)
        if kind == "Deployment":
            return self._set_deployment(namespace, name, None)
        raise ValueError(f"not a Lykeion kind: {kind}")

    def _set_family(self, ns: str, name: str, info: FamilyInfo | None) -> set[Key]:
        before = self.families.get((ns, name))
        _put(self.families, (ns, name), info)
        if (before is None) == (info is None):
            return set()
        return {Key("Model", ns, m) for m in self.models_of_family(ns, name)}

    def _set_manifest(
        self, ns: str, name: str, defines: dict[str, str] | None, switched: bool = False
    ) -> set[Key]:
        before = self.manifests.get((ns, name), {})
        _put(self.manifests, (ns, name), defines)
        after = defines or {}
        servers: set[Key] = set()
        if switched and after:
            # New tables in effect (a generation switch, a recreated object): the
            # Deployments serving these features re-render their servers onto them, and
            # Models waiting for their features to be materialized may train.
            users = {
                (mname, m)
                for (mns, mname), m in self.models.items()
                if mns == ns and any(feature_name(ref) in after for ref in m.features)
            }
            servers = {Key("Model", ns, mname) for mname, _ in users} | {
                Key("Deployment", ns, d)
                for _, m in users
                for d in self.deployments_of(ns, m.family, m.segment)
            }
        if before == after:
            return servers
        touched = {ref for ref in set(before) | set(after) if before.get(ref) != after.get(ref)}
        dependents = {
            Key("Model", mns, mname)
            for (mns, mname), model in self.models.items()
            if mns == ns and any(feature_name(ref) in touched for ref in model.features)
        }
        # Other manifests defining the same features may gain or lose a conflict.
        dependents |= {
            Key("FeatureManifest", fns, fname)
            for (fns, fname), other in self.manifests.items()
            if fns == ns and fname != name and touched & set(other)
        }
        return dependents | servers

    def _set_model(self, ns: str, name: str, info: ModelInfo | None) -> set[Key]:
        before = self.models.get((ns, name))
        _put(self.models, (ns, name), info)
        if before == info:
            return set()
        keys: set[Key] = set()
        for model in (before, info):
            if model is None:
                continue
            keys.add(Key("ModelFamily", ns, model.family))
            keys |= {
                Key("Deployment", ns, d)
                for d in self.deployments_of(ns, model.family, model.segment)
            }
        return keys

    def _set_deployment(self, ns: str, name: str, info: DeploymentInfo | None) -> set[Key]:
        before = self.deployments.get((ns, name))
        _put(self.deployments, (ns, name), info)
        if before == info:
            return set()
        return {Key("ModelFamily", ns, d.family) for d in (before, info) if d is not None}

    # -- queries ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "ModelFamily": len(self.families),
            "FeatureManifest": len(self.manifests),
            "Model": len(self.models),
            "Deployment": len(self.deployments),
        }

    def family_exists(self, ns: str, alias: str) -> bool:
        return (ns, alias) in self.families

    def definitions(self, ns: str, feature: str) -> dict[str, str]:
        """FeatureManifest name -> declared type, for every manifest defining `feature`."""
        return {
            name: defines[feature]
            for (mns, name), defines in sorted(self.manifests.items())
            if mns == ns and feature in defines
        }

    def manifests_for(self, ns: str, features: list[str]) -> list[dict[str, Any]]:
        """FeatureManifest objects (name, namespace, uid, spec, the generation in effect as
        `status.materializedGeneration`) defining any of `features`."""
        names = {feature_name(f) for f in features}
        found = []
        for (mns, name), defines in sorted(self.manifests.items()):
            if mns != ns or not names & set(defines) or (mns, name) not in self.manifest_specs:
                continue
            uid, generation = self.manifest_tables.get((mns, name), ("", None))
            found.append(
                {
                    "metadata": {"name": name, "namespace": mns, "uid": uid},
                    "spec": self.manifest_specs[(mns, name)],
                    "status": {"materializedGeneration": generation},
                }
            )
        return found

    def models_of_family(self, ns: str, family: str) -> list[str]:
        return sorted(n for (mns, n), m in self.models.items() if mns == ns and m.family == family)

    def model_for(
        self, ns: str, family: str, segment: str, version: str
    ) -> tuple[str, ModelInfo] | None:
        for (mns, name), model in self.models.items():
            if (mns, model.family, model.segment, model.version) == (ns, family, segment, version):
                return name, model
        return None

    def deployments_of(self, ns: str, family: str, segment: str | None = None) -> list[str]:
        return sorted(
            n
            for (dns, n), d in self.deployments.items()
            if dns == ns and d.family == family and (segment is None or d.segment == segment)
        )


def _put(table: dict[Any, Any], key: Any, value: Any) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value
