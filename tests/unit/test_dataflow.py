"""Dataflow options rendered from configuration, checked by Beam's own validator."""

from __future__ import annotations

from lykeion.config import PlatformConfig
from lykeion.features.dataflow import check, dataflow_args, with_job_name
from lykeion.handlers.materialization import run_name


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
