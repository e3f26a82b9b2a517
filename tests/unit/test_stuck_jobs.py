"""Why a Job cannot go on (pure, on API objects as data), the shared data volume in Jobs and
model servers, and the variable that configures it."""

from __future__ import annotations

import pytest

from lykeion.config import PlatformConfig, parse_data_volume
from lykeion.executors import kubernetes_render as render
from lykeion.executors.base import Endpoint, VersionServer, Work
from lykeion.executors.kubernetes import DataVolume, build_job, stuck_reason
from lykeion.executors.kubernetes_endpoints import with_data_volume
from tests.objects import server_config

JOB = {"metadata": {"name": "rider-activity-g1-r1", "namespace": "team-b"}}
NO_ACCOUNT = (
    'Error creating: pods "rider-activity-g1-r1-" is forbidden: error looking up service '
    'account team-b/lykeion-workload: serviceaccount "lykeion-workload" not found'
)


def _event(kind: str, name: str, reason: str, message: str, when: str) -> dict[str, object]:
    return {
        "involvedObject": {"kind": kind, "name": name},
        "reason": reason,
        "message": message,
        "lastTimestamp": when,
    }


def _pod(phase: str, **status: object) -> dict[str, object]:
    return {"metadata": {"name": "rider-activity-g1-r1-x7"}, "status": {"phase": phase, **status}}


def test_no_pod_and_a_failed_create_names_the_missing_account_and_the_chart_value() -> None:
    events = [
        _event("Job", "rider-activity-g1-r1", "FailedCreate", "old quota", "2026-01-01T00:00:00Z"),
        _event("Job", "rider-activity-g1-r1", "FailedCreate", NO_ACCOUNT, "2026-01-01T00:01:00Z"),
    ]
    reason, message = stuck_reason(JOB, [], events) or ("", "")
    assert reason == "PodNotCreated"
    assert 'serviceaccount "lykeion-workload" not found' in message  # the newest event
    assert "team-b has no ServiceAccount lykeion-workload" in message
    assert "workload.extraNamespaces" in message


def test_other_create_failures_say_to_fix_what_the_message_names() -> None:
    events = [_event("Job", "j", "FailedCreate", "exceeded quota: cpu", "2026-01-01T00:00:00Z")]
    reason, message = stuck_reason(JOB, [], events) or ("", "")
    assert reason == "PodNotCreated" and "exceeded quota: cpu" in message
    assert "fix what the message names (a ServiceAccount, a quota" in message


def test_a_job_that_only_waits_is_not_stuck() -> None:
    assert stuck_reason(JOB, [], []) is None  # the Job controller has not acted yet
    assert stuck_reason(JOB, [_pod("Pending")], []) is None  # scheduled, starting
    assert stuck_reason(JOB, [_pod("Running")], []) is None
    # A SuccessfulCreate or another object's FailedCreate says nothing about this Job.
    other = [_event("Pod", "p", "FailedCreate", "x", "2026-01-01T00:00:00Z")]
    assert stuck_reason(JOB, [], other) is None


@pytest.mark.parametrize(
    ("waiting", "reason"),
    [
        ("ErrImagePull", "ImagePullFailed"),
        ("ImagePullBackOff", "ImagePullFailed"),
        ("ErrImageNeverPull", "ImagePullFailed"),
        ("InvalidImageName", "ImagePullFailed"),
        ("CreateContainerConfigError", "ContainerNotCreated"),
    ],
)
def test_a_container_waiting_on_what_waiting_cannot_heal(waiting: str, reason: str) -> None:
    pod = _pod(
        "Pending",
        containerStatuses=[
            {"image": "reg/x:1", "state": {"waiting": {"reason": waiting, "message": "m1"}}}
        ],
    )
    got, message = stuck_reason(JOB, [pod], []) or ("", "")
    assert got == reason
    assert "rider-activity-g1-r1-x7 (reg/x:1): m1;" in message


def test_a_docker_env_image_that_cannot_be_pulled_names_the_mlproject() -> None:
    waiting = {"reason": "ImagePullBackOff", "message": "Back-off pulling image team/t:9"}
    pod = _pod(
        "Pending",
        initContainerStatuses=[
            {"name": "project", "image": "team/t:9", "state": {"waiting": waiting}}
        ],
        containerStatuses=[{"name": "work", "state": {"waiting": {"reason": "PodInitializing"}}}],
    )
    reason, message = stuck_reason(JOB, [pod], []) or ("", "")
    assert reason == "ImagePullFailed"
    assert "(team/t:9): Back-off pulling image team/t:9;" in message
    assert "docker_env.image" in message and "imagePullSecrets" in message


def test_a_pulling_container_is_not_stuck() -> None:
    pod = _pod(
        "Pending", containerStatuses=[{"state": {"waiting": {"reason": "ContainerCreating"}}}]
    )
    assert stuck_reason(JOB, [pod], []) is None


def test_unschedulable_says_which_resources_to_lower() -> None:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient memory.",
    }
    reason, message = stuck_reason(JOB, [_pod("Pending", conditions=[condition])], []) or ("", "")
    assert reason == "Unschedulable"
    assert "Insufficient memory" in message and "spec.training.resources" in message


def test_a_volume_that_cannot_mount() -> None:
    events = [
        _event(
            "Pod",
            "rider-activity-g1-r1-x7",
            "FailedMount",
            'secret "git-ssh" not found',
            "2026-01-01T00:00:00Z",
        )
    ]
    reason, message = stuck_reason(JOB, [_pod("Pending")], events) or ("", "")
    assert reason == "VolumeNotMounted" and 'secret "git-ssh" not found' in message


DATA = DataVolume({"hostPath": {"path": "/srv/lykeion", "type": "Directory"}}, "/var/lib/lykeion")


def test_jobs_mount_the_data_volume_at_the_data_directory() -> None:
    job = build_job(Work("run-1", "ns", "img", ("python",)), DATA)
    pod = job["spec"]["template"]["spec"]
    assert {"name": "data", "hostPath": {"path": "/srv/lykeion", "type": "Directory"}} in pod[
        "volumes"
    ]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/var/lib/lykeion"} in mounts
    # Without one, nothing is mounted.
    bare = build_job(Work("run-1", "ns", "img", ("python",)))["spec"]["template"]["spec"]
    assert [v["name"] for v in bare["volumes"]] == ["tmp"]


def test_model_servers_mount_the_data_volume_routers_do_not() -> None:
    endpoint = Endpoint(
        name="forward-default",
        namespace="team-a",
        backend="lykeion",
        servers=(VersionServer("1.0", "forward-default-1-0", server_config("1.0")),),
        weights={"1.0": 100},
        image="serving:1",
    )
    rendered = render.render(endpoint)
    mounted = with_data_volume(rendered, DATA)
    assert rendered == render.render(endpoint)  # input untouched
    pods = {
        m["metadata"]["name"]: m["spec"]["template"]["spec"]
        for m in mounted
        if m["kind"] == "Deployment"
    }
    server, router = pods["forward-default-1-0"], pods["forward-default-router"]
    assert {"name": "data", "mountPath": "/var/lib/lykeion"} in server["containers"][0][
        "volumeMounts"
    ]
    assert "data" in [v["name"] for v in server["volumes"]]
    assert "data" not in [v["name"] for v in router["volumes"]]


def test_seldon_and_kserve_model_servers_mount_the_data_volume_and_review_as_the_server() -> None:
    # Seldon's predictor pods and KServe's transformer run the Lykeion server: it reads the
    # online store on the data volume and reviews callers with the serving account.
    config = server_config(
        "1.0", access="kubernetes", storage_uri="mlflow-artifacts:/1/m/artifacts"
    )
    servers = (VersionServer("1.0", "forward-default-1-0", config),)
    for backend in ("seldon", "kserve"):
        # KServe fetches mlflow-artifacts: through the ClusterStorageContainer it is told of.
        endpoint = Endpoint(name="forward-default", namespace="team-a", backend=backend,
                            servers=servers, weights={"1.0": 100}, image="serving:1",
                            kserve_storage_schemes=("mlflow-artifacts:",))  # fmt: skip
        (manifest,) = with_data_volume(render.render(endpoint), DATA)
        if backend == "seldon":
            (predictor,) = manifest["spec"]["predictors"]
            assert predictor["annotations"] == {"seldon.io/no-engine": "true"}
            pod = predictor["componentSpecs"][0]["spec"]
        else:
            pod = manifest["spec"]["transformer"]
            assert "volumes" not in manifest["spec"]["predictor"]
        assert pod["serviceAccountName"] == "lykeion-serving"
        assert pod["automountServiceAccountToken"] is True
        assert pod["volumes"] == [DATA.volume()]
        assert pod["containers"][0]["volumeMounts"] == [DATA.mount()]


def test_the_data_volume_variable() -> None:
    assert parse_data_volume("") is None
    assert parse_data_volume('{"persistentVolumeClaim": {"claimName": "d"}}') == {
        "persistentVolumeClaim": {"claimName": "d"}
    }
    with pytest.raises(ValueError, match="LYKEION_DATA_VOLUME is not JSON"):
        parse_data_volume("{hostPath")
    with pytest.raises(ValueError, match="one volume source"):
        parse_data_volume("[]")
    config = PlatformConfig.from_env(
        {"LYKEION_DATA_DIR": "/d", "LYKEION_DATA_VOLUME": '{"emptyDir": {}}'}
    )
    assert config.data_volume == {"emptyDir": {}}
