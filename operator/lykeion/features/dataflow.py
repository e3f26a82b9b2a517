"""Pipeline options for Google Cloud Dataflow, rendered from operator configuration and
checked with Beam's own validator (Dataflow itself cannot run on one machine)."""

from __future__ import annotations

from collections.abc import Sequence


def dataflow_args(
    project: str,
    region: str,
    temp_location: str,
    image: str,
    service_account: str | None = None,
) -> tuple[str, ...]:
    """Beam arguments that run the pipeline on Dataflow with the workload image."""
    args = [
        "--runner=DataflowRunner",
        f"--project={project}",
        f"--region={region}",
        f"--temp_location={temp_location}",
        f"--staging_location={temp_location.rstrip('/')}/staging",
        f"--sdk_container_image={image}",
        "--experiments=use_runner_v2",
    ]
    if service_account:
        args.append(f"--service_account_email={service_account}")
    return tuple(args)


def with_job_name(args: Sequence[str], name: str) -> tuple[str, ...]:
    """Name the Dataflow job after the run, so a restarted operator can find it."""
    if "--runner=DataflowRunner" not in args:
        return tuple(args)
    return (*[a for a in args if not a.startswith("--job_name=")], f"--job_name={name}")


def check(args: Sequence[str]) -> list[str]:
    """Beam's own checks of the Dataflow options: job name, project, region, endpoint and
    gs:// locations. (Beam's full `validate()` also probes GCS and cloud credentials,
    which needs a network this check must not depend on.)"""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    options = PipelineOptions(list(args))
    validator = PipelineOptionsValidator(options, DataflowRunner())
    cloud = options.view_as(GoogleCloudOptions)
    errors: list[str] = validator.validate_cloud_options(cloud)
    for location in ("temp_location", "staging_location"):
        errors += validator.validate_gcs_path(cloud, location)
    return errors
