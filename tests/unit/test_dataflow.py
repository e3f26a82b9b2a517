"""Dataflow options rendered from configuration, checked by Beam's own validator, and the
pipeline's read step per source kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apache_beam as beam
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.config import PlatformConfig
from lykeion.features.compile import Range, history_sql
from lykeion.features.dataflow import check, dataflow_args, with_job_name
from lykeion.features.pipeline import bigquery_online_sql, build
from lykeion.features.view import FeatureView
from lykeion.handlers.materialization import run_name
from lykeion.local.controlplane import REPO_ROOT


def test_rendered_options_pass_beams_dataflow_validator() -> None:
    config = PlatformConfig.from_env(
        {
            "LYKEION_DATAFLOW_PROJECT": "acme-ml",
            "LYKEION_DATAFLOW_REGION": "europe-west1",
            "LYKEION_DATAFLOW_TEMP_LOCATION": "gs://acme-ml-tmp/lykeion",
            "LYKEION_PIPELINE_IMAGE": "europe-docker.pkg.dev/acme-ml/lykeion/workloads:0.1.0",
            "LYKEION_DATAFLOW_SERVICE_ACCOUNT": "lykeion@acme-ml.iam.gserviceaccount.com",
        }
    )
    args = with_job_name(config.beam_args, run_name("rider-activity", 3, 12))
    assert "--runner=DataflowRunner" in args and "--job_name=rider-activity-g3-r12" in args
    assert "--sdk_container_image=europe-docker.pkg.dev/acme-ml/lykeion/workloads:0.1.0" in args
    assert check(args) == []


def test_validator_catches_what_dataflow_would_refuse() -> None:
    bad_location = dataflow_args("acme-ml", "europe-west1", "/tmp/not-gcs", "img:1")
    assert any("temp_location" in error for error in check(bad_location))
    bad_project = dataflow_args("Acme ML", "europe-west1", "gs://b/t", "img:1")
    assert any("project" in error.lower() for error in check(bad_project))
    bad_name = with_job_name(
        dataflow_args("acme-ml", "europe-west1", "gs://b/t", "img:1"), "Bad_Name"
    )
    assert any("job_name" in error for error in check(bad_name))


def test_local_runs_keep_direct_runner_and_no_job_name() -> None:
    config = PlatformConfig.from_env({})
    assert config.beam_args == ("--runner=DirectRunner",)
    assert with_job_name(config.beam_args, "x") == ("--runner=DirectRunner",)


def _bigquery_spec() -> FeatureManifestSpec:
    body = yaml.safe_load((REPO_ROOT / "examples/forward/features.yaml").read_text())["spec"]
    body["source"] = {"bigquery": {"table": "acme-ml.rides.rides"}, "timestampColumn": "event_time"}
    return FeatureManifestSpec.model_validate(body)


def _transforms(pipeline: beam.Pipeline) -> dict[str, Any]:
    found: dict[str, Any] = {}

    class Visitor(PipelineVisitor):
        def enter_composite_transform(self, node: Any) -> None:
            found[node.full_label] = node.transform

        def visit_transform(self, node: Any) -> None:
            found[node.full_label] = node.transform

    pipeline.visit(Visitor())
    return found


def test_bigquery_sources_are_read_by_bigquery_with_the_compiled_sql() -> None:
    """On Dataflow the pipeline reads a BigQuery source with Beam's ReadFromBigQuery,
    running the manifest's BigQuery SQL (the SQL the emulator test runs) as the query."""
    spec = _bigquery_spec()
    view = FeatureView.from_body(
        {
            "metadata": {"name": "rider-activity"},
            "spec": spec.model_dump(by_alias=True, exclude_none=True),
        }
    )
    start = datetime(2026, 2, 1, tzinfo=UTC)
    run_range = Range(start, start + timedelta(hours=1))
    # Constructed, not run: a Dataflow runner would probe GCS on construction, and without
    # --no_auth Beam retries looking for cloud credentials for minutes.
    options = PipelineOptions(["--runner=DirectRunner", "--project=acme-ml", "--no_auth"])
    pipeline = beam.Pipeline(options=options)
    build(
        pipeline, spec, view, run_range, "bigquery://acme-ml/features", "bigtable://acme-ml/i", None
    )
    transforms = _transforms(pipeline)
    read = transforms["ReadHistory"]
    assert isinstance(read, beam.io.ReadFromBigQuery)
    assert read.method == beam.io.ReadFromBigQuery.Method.DIRECT_READ
    assert read._kwargs["query"] == history_sql(spec, "bigquery", run_range)
    assert read._kwargs["use_standard_sql"] is True
    assert "TIMESTAMP '2026-02-01T01:00:00+00:00'" in read._kwargs["query"]
    # The online rows (values at each key's newest event and their steps) by BigQuery too.
    online = transforms["ReadOnline"]
    assert isinstance(online, beam.io.ReadFromBigQuery)
    assert online._kwargs["query"] == bigquery_online_sql(spec, view, run_range)
    assert "Start" not in transforms  # no DuckDB read for a BigQuery source


def test_file_sources_are_read_by_duckdb_inside_the_pipeline(tmp_path: Path) -> None:
    body = yaml.safe_load((REPO_ROOT / "examples/forward/features.yaml").read_text())
    spec = FeatureManifestSpec.model_validate(body["spec"])
    view = FeatureView.from_body(body | {"metadata": {"name": "rider-activity"}})
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    build(
        pipeline,
        spec,
        view,
        Range(),
        f"duckdb://{tmp_path}/o.duckdb",
        f"sqlite://{tmp_path}/o.db",
        None,
    )
    transforms = _transforms(pipeline)
    assert not any(isinstance(t, beam.io.ReadFromBigQuery) for t in transforms.values())
    assert "ReadHistory" in transforms and "Start" in transforms
