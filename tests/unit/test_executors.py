"""Executor builders (pure) and the local executor with real processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lykeion.config import PackageIndex, PlatformConfig
from lykeion.executors import make_executor
from lykeion.executors.base import Endpoint, State, VersionServer, Work
from lykeion.executors.kubernetes import OWNER_UID_LABEL, build_job, job_owner_uid, job_state
from lykeion.executors.local import LocalExecutor
from lykeion.names import child_name
from lykeion.training.run import uv_settings
from tests.objects import server_config


def test_child_names_are_deterministic_and_bounded() -> None:
    assert child_name("forward", "default", "1.0", "train") == "forward-default-1-0-train"
    with pytest.raises(ValueError, match="limit is 63"):
        child_name("a" * 20, "b" * 20, "1.2.3", "x" * 20)


def test_job_builder_is_pure_non_root_and_bounded() -> None:
    work = Work(
        "forward-default-1-0-train",
        "ns",
        "img:1",
        ("python", "-m", "x"),
        {"B": "2", "A": "1"},
        cpu="2",
        memory="3Gi",
    )
    job = build_job(work)
    assert work.env == {"B": "2", "A": "1"}  # input untouched
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "lykeion-workload"
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "LYKEION_RESULT_PATH", "value": "/dev/termination-log"},
    ]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "3Gi"}
    # read-only image, writable /tmp (HOME) from an emptyDir
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert job["spec"]["backoffLimit"] == 0
    with pytest.raises(ValueError):
        build_job(Work("Bad_Name", "ns", "i", ("x",)))


def test_job_mounts_the_git_ssh_secret_only_when_named() -> None:
    plain = build_job(Work("forward-default-1-0-t1", "ns", "img", ("python",)))
    pod = plain["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert "fsGroup" not in pod["securityContext"]
    assert "GIT_SSH_COMMAND" not in {e["name"] for e in pod["containers"][0]["env"]}

    work = Work("forward-default-1-0-t1", "ns", "img", ("python",), git_ssh_secret="git-ssh")
    pod = build_job(work)["spec"]["template"]["spec"]
    assert pod["volumes"][1:] == [
        {"name": "git-ssh", "secret": {"secretName": "git-ssh", "defaultMode": 0o440}}
    ]
    container = pod["containers"][0]
    assert container["volumeMounts"][1:] == [
        {"name": "git-ssh", "mountPath": "/etc/lykeion/git-ssh", "readOnly": True}
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GIT_SSH_COMMAND"] == (
        "ssh -i /etc/lykeion/git-ssh/ssh-privatekey -o IdentitiesOnly=yes "
        "-o UserKnownHostsFile=/etc/lykeion/git-ssh/known_hosts"
    )
    # Secret files are root's; the non-root user reads them through its group.
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_job_state_mapping() -> None:
    assert job_state({}).state is State.PENDING
    assert job_state({"status": {"active": 1}}).state is State.RUNNING
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert job_state(done).state is State.SUCCEEDED
    failed = {
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "boom",
                }
            ]
        }
    }
    status = job_state(failed)
    assert status.state is State.FAILED and status.message == "BackoffLimitExceeded: boom"


async def _wait_finished(executor: LocalExecutor, name: str) -> State:
    for _ in range(100):
        status = await executor.status("ns", name)
        if status.state.finished:
            return status.state
        await asyncio.sleep(0.1)
    raise AssertionError("work did not finish")


def test_local_executor_runs_once_even_across_restarts(tmp_path: Path) -> None:
    async def scenario() -> None:
        counter = tmp_path / "count"
        work = Work(
            "w1", "ns", "unused", ("bash", "-c", f"echo run >> {counter}; echo hello; sleep 0.5")
        )
        first = LocalExecutor(tmp_path / "runs")
        assert (await first.submit(work)).state is State.RUNNING
        # A new executor (the operator restarted) finds the same run by name.
        second = LocalExecutor(tmp_path / "runs")
        assert (await second.submit(work)).state is State.RUNNING
        assert await _wait_finished(second, "w1") is State.SUCCEEDED
        assert (await second.submit(work)).state is State.SUCCEEDED
        assert counter.read_text() == "run\n"
        assert "hello" in await second.logs("ns", "w1")

    asyncio.run(scenario())


def test_local_executor_reports_failure_with_log_tail(tmp_path: Path) -> None:
    async def scenario() -> None:
        executor = LocalExecutor(tmp_path)
        await executor.submit(
            Work("bad", "ns", "unused", ("bash", "-c", "echo 'no MLproject found' >&2; exit 3"))
        )
        assert await _wait_finished(executor, "bad") is State.FAILED
        status = await executor.status("ns", "bad")
        assert "exited with 3" in status.message and "no MLproject found" in status.message
        assert (await executor.status("ns", "never")).state is State.MISSING

    asyncio.run(scenario())


def test_local_executor_cancel(tmp_path: Path) -> None:
    async def scenario() -> None:
        executor = LocalExecutor(tmp_path)
        await executor.submit(Work("long", "ns", "unused", ("sleep", "30")))
        await executor.cancel("ns", "long")
        assert await _wait_finished(executor, "long") is State.FAILED

    asyncio.run(scenario())


def _owned(command: str, uid: str) -> Work:
    owner = {"apiVersion": "lykeion.io/v1alpha1", "kind": "FeatureManifest",
             "metadata": {"name": "m", "namespace": "ns", "uid": uid}}  # fmt: skip
    return Work("m-g1-r1", "ns", "unused", ("bash", "-c", command), owner=owner)


def test_local_executor_never_adopts_a_predecessors_run(tmp_path: Path) -> None:
    async def scenario() -> None:
        executor = LocalExecutor(tmp_path / "runs")
        old = _owned(f"echo old >> {tmp_path / 'log'}", "uid-old")
        await executor.submit(old)
        assert await _wait_finished(executor, "m-g1-r1") is State.SUCCEEDED
        # The recreated object (new UID) sees no run of that name, then starts its own.
        assert (await executor.status("ns", "m-g1-r1", "uid-new")).state is State.MISSING
        assert (await executor.status("ns", "m-g1-r1", "uid-old")).state is State.SUCCEEDED
        new = _owned(f"echo new >> {tmp_path / 'log'}", "uid-new")
        assert (await executor.submit(new)).state is State.RUNNING
        assert await _wait_finished(executor, "m-g1-r1") is State.SUCCEEDED
        assert (tmp_path / "log").read_text() == "old\nnew\n"
        assert (await executor.status("ns", "m-g1-r1", "uid-old")).state is State.MISSING
        assert (tmp_path / "runs" / "ns" / ".replaced" / "m-g1-r1.uid-old").is_dir()

    asyncio.run(scenario())


def test_jobs_carry_their_owners_uid() -> None:
    job = build_job(_owned("true", "uid-1"))
    assert job["metadata"]["labels"][OWNER_UID_LABEL] == "uid-1"
    assert job_owner_uid(job) == "uid-1"
    assert job_owner_uid(build_job(Work("x", "ns", "i", ("true",)))) == ""


INDEX_ENV = {
    "LYKEION_PACKAGE_INDEX_URL": "https://pypi.internal/simple",
    "LYKEION_PACKAGE_EXTRA_INDEX_URLS": "https://extra.internal/simple http://plain:8080/simple",
    "LYKEION_PACKAGE_TRUSTED_HOSTS": "plain:8080 pypi.internal",
    "LYKEION_PACKAGE_INDEX_CERT": "/var/lib/lykeion/ca/internal.pem",
}
PIP_ENV = {
    "PIP_INDEX_URL": "https://pypi.internal/simple",
    "PIP_EXTRA_INDEX_URL": "https://extra.internal/simple http://plain:8080/simple",
    "PIP_TRUSTED_HOST": "plain:8080 pypi.internal",
    "PIP_CERT": "/var/lib/lykeion/ca/internal.pem",
}


def test_the_package_index_is_read_from_the_operators_variables_as_pips() -> None:
    config = PlatformConfig.from_env(INDEX_ENV)
    assert config.package_index == PackageIndex(
        "https://pypi.internal/simple",
        ("https://extra.internal/simple", "http://plain:8080/simple"),
        ("plain:8080", "pypi.internal"),
        "/var/lib/lykeion/ca/internal.pem",
    )
    assert config.package_index.env() == PIP_ENV
    assert PlatformConfig.from_env({}).package_index.env() == {}
    only = PackageIndex.from_env({"LYKEION_PACKAGE_INDEX_URL": "https://i/simple"})
    assert only.env() == {"PIP_INDEX_URL": "https://i/simple"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LYKEION_PACKAGE_INDEX_URL", "pypi.internal/simple"),
        ("LYKEION_PACKAGE_EXTRA_INDEX_URLS", "https://ok/simple ftp://no/simple"),
    ],
)
def test_an_index_that_is_not_a_url_is_refused_naming_the_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(ValueError, match=f"^{variable}: .* is not an index URL"):
        PackageIndex.from_env({variable: value})


def test_every_job_gets_the_platforms_variables_under_the_works_own() -> None:
    work = Work("w", "ns", "img", ("train",), {"PIP_CERT": "/own.pem", "X": "1"})
    job = build_job(work, env=PackageIndex.from_env(INDEX_ENV).env())
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {
        **PIP_ENV,
        "PIP_CERT": "/own.pem",
        "X": "1",
        "LYKEION_RESULT_PATH": "/dev/termination-log",
    }
    assert "PIP_INDEX_URL" not in str(build_job(work))


def test_uv_gets_the_jobs_pip_settings_trusted_hosts_included(tmp_path: Path) -> None:
    settings = uv_settings(PIP_ENV, tmp_path)
    assert settings["UV_INDEX_URL"] == PIP_ENV["PIP_INDEX_URL"]
    assert settings["UV_EXTRA_INDEX_URL"] == PIP_ENV["PIP_EXTRA_INDEX_URL"]
    assert settings["UV_INSECURE_HOST"] == "plain:8080 pypi.internal"
    assert settings["SSL_CERT_FILE"] == PIP_ENV["PIP_CERT"]


def test_a_jobs_pods_are_selected_by_the_selector_the_api_server_generated() -> None:
    from lykeion.executors.kubernetes import JOB_UID_LABEL, job_pod_selector

    meta = {"name": "train-a1", "namespace": "ns", "uid": "u-2"}
    # Kubernetes 1.27 and later generate both labels; 1.25 and 1.26 only the legacy one.
    current = {"batch.kubernetes.io/controller-uid": "u-2", "controller-uid": "u-2"}
    legacy = {"controller-uid": "u-2"}
    for labels in (current, legacy):
        job = {"metadata": meta, "spec": {"selector": {"matchLabels": labels}}}
        assert job_pod_selector(job) == ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    # No generated selector (a manual one without the UID, or no spec): the UID label.
    manual = {"metadata": meta, "spec": {"selector": {"matchLabels": {"app": "x"}}}}
    assert job_pod_selector(manual) == f"{JOB_UID_LABEL}=u-2"
    assert job_pod_selector({"metadata": meta}) == f"{JOB_UID_LABEL}=u-2"


def test_local_model_servers_get_the_operators_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `lykeion-operator --kubeconfig kc --executor local` leaves its own environment alone:
    # the model servers' access reviews get `kc` (made absolute: they run in their own
    # folders) from the executor, over any KUBECONFIG of the operator's environment.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", "/elsewhere/config")
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "$KUBECONFIG" > seen-kubeconfig\n')
    python.chmod(0o755)
    endpoint = Endpoint(
        "forward", "ns", "lykeion",
        (VersionServer("1.0", "v1-0", server_config("1.0", name="forward")),),
        {"1.0": 100}, python=str(python),
    )  # fmt: skip

    async def scenario() -> None:
        executor = make_executor("local", None, tmp_path / "runs", kubeconfig="kc")
        await executor.serve(endpoint)
        seen = tmp_path / "runs" / "ns" / "_endpoints" / "forward" / "v1-0" / "seen-kubeconfig"
        for _ in range(100):
            if seen.exists() and seen.read_text():
                break
            await asyncio.sleep(0.05)
        told = seen.read_text()
        await executor.unserve("ns", "forward")
        assert told == f"{tmp_path / 'kc'}\n"

    asyncio.run(scenario())
