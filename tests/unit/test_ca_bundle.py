"""A private CA bundle (chart: workload.caBundle): read from the operator's variables with
errors naming them, mounted read-only with its trust-store variables into every Job and
model server the kubernetes executor renders, and nothing of it when unset."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from lykeion.config import PackageIndex, PlatformConfig, parse_ca_bundle
from lykeion.executors import kubernetes_render as render
from lykeion.executors.base import Endpoint, VersionServer, Work
from lykeion.executors.ca_bundle import CaBundle
from lykeion.executors.kubernetes import DataVolume, build_job, stuck_reason
from lykeion.executors.kubernetes_endpoints import with_ca_bundle, with_data_volume
from lykeion.operator_main import parse_options
from tests.objects import server_config

Kind = Literal["configMap", "secret"]
CA_PATH = "/etc/lykeion/ca/ca.crt"
TRUST_ENV = {
    "SSL_CERT_FILE": CA_PATH,
    "REQUESTS_CA_BUNDLE": CA_PATH,
    "PIP_CERT": CA_PATH,
    "GIT_SSL_CAINFO": CA_PATH,
    "MLFLOW_TRACKING_SERVER_CERT_PATH": CA_PATH,
    "AWS_CA_BUNDLE": CA_PATH,
}
MOUNT = {"name": "ca-bundle", "mountPath": "/etc/lykeion/ca", "readOnly": True}
ITEMS = [{"key": "bundle.pem", "path": "ca.crt"}]
VOLUMES = {
    "configMap": {
        "name": "ca-bundle",
        "configMap": {"name": "internal-ca", "items": ITEMS, "defaultMode": 0o444},
    },
    "secret": {
        "name": "ca-bundle",
        "secret": {"secretName": "internal-ca", "items": ITEMS, "defaultMode": 0o444},
    },
}
VARIABLE = {"configMap": "LYKEION_CA_BUNDLE_CONFIGMAP", "secret": "LYKEION_CA_BUNDLE_SECRET"}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


# -- the operator's variables ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["configMap", "secret"])
def test_the_bundle_is_read_from_the_operators_variables(kind: Kind) -> None:
    env = {VARIABLE[kind]: "internal-ca", "LYKEION_CA_BUNDLE_KEY": "bundle.pem"}
    assert PlatformConfig.from_env(env).ca_bundle == CaBundle(kind, "internal-ca", "bundle.pem")
    # The key defaults to ca.crt (the key cert-manager and trust-manager write).
    default = parse_ca_bundle({VARIABLE[kind]: "internal-ca"})
    assert default == CaBundle(kind, "internal-ca") and default.key == "ca.crt"


def test_no_bundle_without_an_object() -> None:
    assert PlatformConfig.from_env({}).ca_bundle is None
    # The chart renders nothing when neither is set; empty values mean the same.
    assert (
        parse_ca_bundle({"LYKEION_CA_BUNDLE_CONFIGMAP": "", "LYKEION_CA_BUNDLE_SECRET": " "})
        is None
    )
    assert parse_ca_bundle({"LYKEION_CA_BUNDLE_KEY": ""}) is None


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"LYKEION_CA_BUNDLE_CONFIGMAP": "a", "LYKEION_CA_BUNDLE_SECRET": "b"},
            r"^LYKEION_CA_BUNDLE_CONFIGMAP \('a'\) and LYKEION_CA_BUNDLE_SECRET \('b'\) both "
            r"name the CA bundle: set one",
        ),
        (
            {"LYKEION_CA_BUNDLE_SECRET": "internal-ca", "LYKEION_CA_BUNDLE_KEY": ""},
            r"^LYKEION_CA_BUNDLE_KEY: '' is not a key of internal-ca's data",
        ),
        (
            {"LYKEION_CA_BUNDLE_CONFIGMAP": "internal-ca", "LYKEION_CA_BUNDLE_KEY": "ca/crt"},
            r"^LYKEION_CA_BUNDLE_KEY: 'ca/crt' is not a key",
        ),
        (
            {"LYKEION_CA_BUNDLE_CONFIGMAP": "Internal_CA"},
            r"^LYKEION_CA_BUNDLE_CONFIGMAP: 'Internal_CA' is not a ConfigMap or Secret name",
        ),
        (
            {"LYKEION_CA_BUNDLE_SECRET": "a" * 254},
            r"^LYKEION_CA_BUNDLE_SECRET: 'a+' is not a ConfigMap or Secret name",
        ),
        (
            {"LYKEION_CA_BUNDLE_KEY": "ca.crt"},
            r"^LYKEION_CA_BUNDLE_KEY is 'ca.crt', but neither LYKEION_CA_BUNDLE_CONFIGMAP nor "
            r"LYKEION_CA_BUNDLE_SECRET names",
        ),
    ],
)
def test_bad_bundle_settings_are_refused_naming_the_variable(
    env: dict[str, str], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        parse_ca_bundle(env)


def test_the_bundle_and_the_package_indexs_own_cert_are_not_set_together() -> None:
    """The bundle sets PIP_CERT itself: rather than one of them silently losing, the
    operator refuses to start, saying what to do."""
    env = {
        "LYKEION_CA_BUNDLE_CONFIGMAP": "internal-ca",
        "LYKEION_PACKAGE_INDEX_CERT": "/var/lib/lykeion/ca/internal.pem",
    }
    with pytest.raises(ValueError, match="both set: the bundle is the package index's CA too"):
        PlatformConfig.from_env(env)
    with pytest.raises(ValueError, match=r"unset workload\.packageIndex\.cert"):
        PlatformConfig(
            data_dir=PlatformConfig.from_env({}).data_dir, online_store="", offline_store="",
            data_root="", package_index=PackageIndex(cert="/ca.pem"),
            ca_bundle=CaBundle("secret", "internal-ca"),
        )  # fmt: skip
    # Each alone is fine, and the index's other settings go with the bundle.
    index_and_bundle = {
        "LYKEION_CA_BUNDLE_CONFIGMAP": "internal-ca",
        "LYKEION_PACKAGE_INDEX_URL": "https://pypi.internal/simple",
    }
    config = PlatformConfig.from_env(index_and_bundle)
    assert config.ca_bundle is not None and config.package_index.url


def test_the_operator_exits_naming_a_bad_bundle_setting(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"LYKEION_CA_BUNDLE_CONFIGMAP": "a", "LYKEION_CA_BUNDLE_SECRET": "b"}
    with pytest.raises(SystemExit) as exited:
        parse_options([], env)
    assert exited.value.code == 2
    assert "LYKEION_CA_BUNDLE_CONFIGMAP ('a') and LYKEION_CA_BUNDLE_SECRET ('b')" in (
        capsys.readouterr().err
    )


# -- Jobs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["configMap", "secret"])
def test_every_job_mounts_the_bundle_read_only_and_points_the_trust_variables_at_it(
    kind: Kind,
) -> None:
    ca = CaBundle(kind, "internal-ca", "bundle.pem")
    work = Work("forward-default-1-0-t1", "ns", "img", ("python",), git_ssh_secret="git-ssh")
    data = DataVolume({"emptyDir": {}}, "/var/lib/lykeion")
    pod = build_job(work, data, {"PIP_INDEX_URL": "https://pypi.internal/simple"}, ca)["spec"][
        "template"
    ]["spec"]
    # Only the one key, as ca.crt whatever it is called, beside the other volumes.
    assert pod["volumes"][-1] == VOLUMES[kind]
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "git-ssh", "data", "ca-bundle"]
    (container,) = pod["containers"]
    assert container["volumeMounts"][-1] == MOUNT
    env = _env(container)
    assert {k: env[k] for k in TRUST_ENV} == TRUST_ENV
    # The platform's other variables and the git SSH key's stay.
    assert env["PIP_INDEX_URL"] == "https://pypi.internal/simple"
    assert env["GIT_SSH_COMMAND"].startswith("ssh -i /etc/lykeion/git-ssh/ssh-privatekey")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_work_s_own_variables_win_over_the_bundles() -> None:
    work = Work("w", "ns", "img", ("train",), {"REQUESTS_CA_BUNDLE": "/own.pem"})
    container = build_job(work, ca=CaBundle("configMap", "internal-ca"))["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert _env(container)["REQUESTS_CA_BUNDLE"] == "/own.pem"
    assert _env(container)["SSL_CERT_FILE"] == CA_PATH


def test_without_a_bundle_a_job_has_no_trust_variables_and_no_mount() -> None:
    job = build_job(Work("w", "ns", "img", ("train",)))
    pod = job["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert not set(TRUST_ENV) & set(_env(pod["containers"][0]))
    assert "ca-bundle" not in str(job)


def test_a_bundle_missing_in_the_namespace_holds_the_job_saying_what_to_create() -> None:
    """The kubelet's FailedMount event for a ConfigMap (or its key) that is not there."""
    job = {"metadata": {"name": "forward-default-1-0-t1", "namespace": "team-a"}}
    pod = {"metadata": {"name": "forward-default-1-0-t1-x7"}, "status": {"phase": "Pending"}}
    event = {
        "involvedObject": {"kind": "Pod", "name": "forward-default-1-0-t1-x7"},
        "reason": "FailedMount",
        "message": 'MountVolume.SetUp failed for volume "ca-bundle" : configmap '
        '"internal-ca" not found',
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    reason, message = stuck_reason(job, [pod], [event]) or ("", "")
    assert reason == "VolumeNotMounted"
    assert 'configmap "internal-ca" not found' in message
    assert "the CA bundle's ConfigMap or Secret or its key" in message


# -- model servers -------------------------------------------------------------------------


def _endpoint(backend: str) -> Endpoint:
    config = server_config("1.0", storage_uri="mlflow-artifacts:/1/m/artifacts")
    return Endpoint(name="forward-default", namespace="team-a", backend=backend,
                    servers=(VersionServer("1.0", "forward-default-1-0", config),),
                    weights={"1.0": 100}, image="serving:1",
                    kserve_storage_schemes=("mlflow-artifacts:",))  # fmt: skip


@pytest.mark.parametrize("kind", ["configMap", "secret"])
def test_model_servers_mount_the_bundle_routers_do_not(kind: Kind) -> None:
    ca = CaBundle(kind, "internal-ca", "bundle.pem")
    rendered = render.render(_endpoint("lykeion"))
    mounted = with_ca_bundle(rendered, ca)
    assert rendered == render.render(_endpoint("lykeion"))  # input untouched
    pods = {
        m["metadata"]["name"]: m["spec"]["template"]["spec"]
        for m in mounted
        if m["kind"] == "Deployment"
    }
    server, router = pods["forward-default-1-0"], pods["forward-default-router"]
    assert server["volumes"] == [VOLUMES[kind]]
    (container,) = server["containers"]
    assert container["volumeMounts"] == [MOUNT]
    # The server's own configuration stays first.
    assert container["env"][0]["name"] == "LYKEION_SERVER_CONFIG"
    assert {k: v for k, v in _env(container).items() if k in TRUST_ENV} == TRUST_ENV
    # The router forwards to the version Services over plain HTTP: nothing to trust.
    assert "ca-bundle" not in str(router)
    # The untouched objects (Services, the routes ConfigMap) are the rendered ones.
    assert [m for m in mounted if m["kind"] != "Deployment"] == [
        m for m in rendered if m["kind"] != "Deployment"
    ]


def test_seldon_and_kserve_model_servers_mount_the_bundle_beside_the_data_volume() -> None:
    ca = CaBundle("configMap", "internal-ca")
    data = DataVolume({"emptyDir": {}}, "/var/lib/lykeion")
    for backend in ("seldon", "kserve"):
        (manifest,) = with_ca_bundle(with_data_volume(render.render(_endpoint(backend)), data), ca)
        if backend == "seldon":
            pod = manifest["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
        else:
            pod = manifest["spec"]["transformer"]
            # KServe's own runtime and storage initializer are KServe's to configure.
            assert "ca-bundle" not in str(manifest["spec"]["predictor"])
        assert pod["volumes"] == [data.volume(), ca.volume()]
        (container,) = pod["containers"]
        assert container["volumeMounts"] == [data.mount(), MOUNT]
        assert {k: v for k, v in _env(container).items() if k in TRUST_ENV} == TRUST_ENV
