"""The chart's dashboard and alert rules query only metrics that Lykeion exports, and the
rules render only when enabled (the PrometheusRule CRD is the Prometheus Operator's)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import lykeion.metrics  # noqa: F401 - registers the operator's metrics
from lykeion.features.view import FeatureView
from lykeion.serving.app import DriftGauge, Metrics
from lykeion.serving.config import TrainedFeature
from lykeion.serving.drift import DriftMonitor
from lykeion.serving.enrich import Enricher
from lykeion.serving.request_log import QueuedLog, RequestLog
from lykeion.serving.skew import SkewChecker
from tests import objects
from tests.integration.test_chart import _helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lykeion"


def _exported(folder: Path) -> set[str]:
    """Sample names the model server and the operator can expose."""
    metrics = Metrics()
    view = FeatureView.from_body(objects.manifest(features={"age": "int64"}))
    enricher = Enricher([TrainedFeature(ref="rider.age", column="a", type="int64")], [view])
    SkewChecker(enricher.inputs, lambda: None, metrics.registry)  # type: ignore[arg-type,return-value]
    QueuedLog(RequestLog(folder / "requests.jsonl", 1024, 1), 1, metrics.registry).close()
    metrics.registry.register(DriftGauge(DriftMonitor({}, None)))
    registries: list[CollectorRegistry] = [metrics.registry, REGISTRY]  # the operator's
    names = {s.name for r in registries for family in r.collect() for s in family.samples}
    families = {family.name for r in registries for family in r.collect()}
    # Labelled families without samples yet show up by family name: count them too.
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    return names | {f + s for f in families for s in suffixes}


def _render(*values: str) -> list[dict[str, Any]]:
    args = [_helm(), "template", "lykeion", str(CHART)]
    for value in values:
        args += ["--set", value]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(lykeion_[a-z_]+)\b", expression))


def test_dashboard_and_rules_query_exported_metrics_and_rules_are_off_by_default(
    tmp_path: Path,
) -> None:
    lint = subprocess.run(
        [_helm(), "lint", "--strict", str(CHART), "--set", "alerts.enabled=true"],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert not [d for d in _render() if d["kind"] == "PrometheusRule"]
    rendered = _render("alerts.enabled=true", "alerts.labels.release=prometheus")
    exported = _exported(tmp_path)
    (rule,) = [d for d in rendered if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    expressions = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(expressions) == 4
    (dashboard,) = [
        d
        for d in rendered
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["lykeion-signals.json"])
    expressions += [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = set().union(*(_metric_names(e) for e in expressions))
    assert used and used <= exported, used - exported
    for name in (
        "lykeion_skew_mismatches_total",
        "lykeion_feature_drift_psi",
        "lykeion_feature_newest_event_age_seconds",
        "lykeion_feature_last_success_age_seconds",
        "lykeion_request_log_dropped_total",
    ):
        assert name in used
