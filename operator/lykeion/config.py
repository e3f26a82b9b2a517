"""Operator configuration, read once from the environment (the chart's ConfigMap sets it).

Builders never read the environment: they receive a `PlatformConfig`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lykeion.api.model import DNS_SUBDOMAIN
from lykeion.executors.ca_bundle import CA_FILE, CaBundle
from lykeion.features.dataflow import dataflow_args

INDEX_SCHEMES = ("http://", "https://", "file://")
_OBJECT_NAME = re.compile(DNS_SUBDOMAIN)
"""A ConfigMap's or Secret's name: a DNS subdomain (at most 253 characters)."""
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
"""A key of a ConfigMap's or Secret's data (at most 253 characters)."""


@dataclass(frozen=True)
class PackageIndex:
    """The Python package index that trainings install a project's python_env from, as pip
    settings (`lykeion.training.run.uv_settings` passes them on to uv). Chart:
    `workload.packageIndex`; empty fields: pip's and uv's defaults (the public index)."""

    url: str = ""
    """The index that replaces the default one (`PIP_INDEX_URL`), e.g.
    `https://pypi.internal/simple`."""
    extra_urls: tuple[str, ...] = ()
    """Indexes searched as well (`PIP_EXTRA_INDEX_URL`)."""
    trusted_hosts: tuple[str, ...] = ()
    """Hosts (`host` or `host:port`) reached without a verified certificate, or over plain
    HTTP (`PIP_TRUSTED_HOST`; uv's `UV_INSECURE_HOST`)."""
    cert: str = ""
    """A CA bundle file in the Job's container to verify the index with (`PIP_CERT`; uv's
    `SSL_CERT_FILE`): a path in the workloads image or on the data volume. Not together
    with `PlatformConfig.ca_bundle`, which sets `PIP_CERT` itself."""

    def env(self) -> dict[str, str]:
        """pip's variables for the fields that are set (pure): lists space-separated, as
        pip and uv read them."""
        env = {
            "PIP_INDEX_URL": self.url,
            "PIP_EXTRA_INDEX_URL": " ".join(self.extra_urls),
            "PIP_TRUSTED_HOST": " ".join(self.trusted_hosts),
            "PIP_CERT": self.cert,
        }
        return {key: value for key, value in env.items() if value}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PackageIndex:
        """Read from `LYKEION_PACKAGE_INDEX_URL`, `LYKEION_PACKAGE_EXTRA_INDEX_URLS`,
        `LYKEION_PACKAGE_TRUSTED_HOSTS` (both space-separated) and
        `LYKEION_PACKAGE_INDEX_CERT`. Raises ValueError naming the variable for an index
        URL that is not http, https or file."""
        url = env.get("LYKEION_PACKAGE_INDEX_URL", "").strip()
        extra = tuple(env.get("LYKEION_PACKAGE_EXTRA_INDEX_URLS", "").split())
        for variable, value in [("LYKEION_PACKAGE_INDEX_URL", url)] + [
            ("LYKEION_PACKAGE_EXTRA_INDEX_URLS", u) for u in extra
        ]:
            if value and not value.startswith(INDEX_SCHEMES):
                raise ValueError(
                    f"{variable}: {value!r} is not an index URL (http://, https:// or "
                    "file://), e.g. https://pypi.internal/simple"
                )
        return cls(
            url=url,
            extra_urls=extra,
            trusted_hosts=tuple(env.get("LYKEION_PACKAGE_TRUSTED_HOSTS", "").split()),
            cert=env.get("LYKEION_PACKAGE_INDEX_CERT", "").strip(),
        )


@dataclass(frozen=True)
class PlatformConfig:
    data_dir: Path
    """Embedded stores and run folders live here."""
    online_store: str
    """URI: sqlite:///path or bigtable://project/instance."""
    offline_store: str
    """URI: duckdb:///path or bigquery://project/dataset."""
    data_root: str
    """Relative `file` sources of FeatureManifests are resolved against this directory."""
    feature_engine: str = "beam"
    """`beam` (the pipeline; runner from `beam_args`) or `duckdb` (the in-process fast path)."""
    beam_args: tuple[str, ...] = ("--runner=DirectRunner",)
    python: str = sys.executable
    """Interpreter of local runs (an environment with the `pipelines` extra)."""
    image: str = "lykeion/pipelines:0.1.0"
    """Image of Kubernetes runs."""
    serving_image: str = "lykeion/serving:0.1.0"
    """Image of the model servers and routers rendered for Deployments on Kubernetes."""
    kserve_mode: str = "RawDeployment"
    """KServe deployment mode the `kserve` backend renders (`serving.kserve.io/deploymentMode`):
    `RawDeployment` (no Knative; one version per InferenceService, no canary split) or
    `Serverless` (Knative; `canaryTrafficPercent` splits). `LYKEION_KSERVE_DEPLOYMENT_MODE`."""
    kserve_storage_schemes: tuple[str, ...] = ()
    """Model locations KServe fetches beyond its storage initializer's own schemes: the
    prefixes (e.g. `mlflow-artifacts:`) of the `ClusterStorageContainer`s installed with
    KServe (its extension point for storage URI schemes).
    `LYKEION_KSERVE_STORAGE_SCHEMES`, comma-separated."""
    tracking_uri: str = ""
    """MLflow tracking and registry (the embedded default: a SQLite-backed server)."""
    poll_seconds: float = 3.0
    """How often running work and cron schedules are checked."""
    access: str = "off"
    """Model servers' access control (`lykeion.access`): `kubernetes` or `off`."""
    git_ssh_secret: str | None = None
    """Secret (in each Model's namespace) with the SSH key and known_hosts for git sources,
    unless a Model names its own (`spec.source.sshSecret`); chart: `workload.gitSshSecret`."""
    data_volume: dict[str, Any] | None = None
    """A Kubernetes volume source (e.g. `{"hostPath": {"path": ...}}` or
    `{"persistentVolumeClaim": {"claimName": ...}}`) that the `kubernetes` executor mounts
    at `data_dir` in every Job and model server, so that pipelines, trainings and servers
    share the embedded stores, the data root and the model artifacts; None: nothing is
    mounted (stores reached over the network). Chart: `stores.volume`."""
    state_dir: Path = Path.home() / ".lykeion" / "runs"
    """Where the local executor keeps its runs' records (`LYKEION_STATE_DIR`)."""
    package_index: PackageIndex = PackageIndex()
    """Where trainings install a project's python_env from: the `kubernetes` executor puts
    its pip variables in every Job's environment (`PackageIndex.env`); local runs have the
    operator's own environment. Chart: `workload.packageIndex`."""
    ca_bundle: CaBundle | None = None
    """The CA bundle (a ConfigMap or Secret in each workload namespace) that the
    `kubernetes` executor mounts into every Job and model server, pointing
    `executors.ca_bundle.CA_VARIABLES` (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `PIP_CERT`,
    ...) at it; None: the images' own trust store. Chart: `workload.caBundle`. Not together with
    `package_index.cert`: the bundle is the index's CA then too, so both set is refused
    (ValueError) rather than one of them silently ignored."""

    def __post_init__(self) -> None:
        if self.ca_bundle is not None and self.package_index.cert:
            raise ValueError(
                f"LYKEION_PACKAGE_INDEX_CERT ({self.package_index.cert!r}) and the CA bundle "
                f"({self.ca_bundle.kind} {self.ca_bundle.name}) are both set: the bundle is "
                "the package index's CA too (PIP_CERT); add the index's CA to the bundle and "
                "unset workload.packageIndex.cert (or unset workload.caBundle)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PlatformConfig:
        env = os.environ if env is None else env
        data_dir = Path(env.get("LYKEION_DATA_DIR", str(Path.home() / ".lykeion" / "data")))
        image = env.get("LYKEION_PIPELINE_IMAGE", "lykeion/pipelines:0.1.0")
        if "LYKEION_BEAM_ARGS" in env or not env.get("LYKEION_DATAFLOW_PROJECT"):
            beam_args = tuple(env.get("LYKEION_BEAM_ARGS", "--runner=DirectRunner").split())
        else:
            beam_args = dataflow_args(
                env["LYKEION_DATAFLOW_PROJECT"],
                env.get("LYKEION_DATAFLOW_REGION", "us-central1"),
                env.get("LYKEION_DATAFLOW_TEMP_LOCATION", ""),
                image,
                env.get("LYKEION_DATAFLOW_SERVICE_ACCOUNT"),
            )
        return cls(
            data_dir=data_dir,
            online_store=env.get("LYKEION_ONLINE_STORE", f"sqlite://{data_dir / 'online.db'}"),
            offline_store=env.get(
                "LYKEION_OFFLINE_STORE", f"duckdb://{data_dir / 'offline.duckdb'}"
            ),
            data_root=env.get("LYKEION_DATA_ROOT", os.getcwd()),
            feature_engine=env.get("LYKEION_FEATURE_ENGINE", "beam"),
            beam_args=beam_args,
            python=env.get("LYKEION_PYTHON", sys.executable),
            image=image,
            serving_image=env.get("LYKEION_SERVING_IMAGE", "lykeion/serving:0.1.0"),
            kserve_mode=env.get("LYKEION_KSERVE_DEPLOYMENT_MODE", "RawDeployment"),
            kserve_storage_schemes=tuple(
                s.strip()
                for s in env.get("LYKEION_KSERVE_STORAGE_SCHEMES", "").split(",")
                if s.strip()
            ),
            tracking_uri=env.get(
                "LYKEION_MLFLOW_TRACKING_URI", f"sqlite:///{data_dir / 'mlflow.db'}"
            ),
            poll_seconds=float(env.get("LYKEION_POLL_SECONDS", "3")),
            access=env.get("LYKEION_ACCESS", "off"),
            git_ssh_secret=env.get("LYKEION_GIT_SSH_SECRET") or None,
            data_volume=parse_data_volume(env.get("LYKEION_DATA_VOLUME", "")),
            state_dir=Path(env.get("LYKEION_STATE_DIR", str(Path.home() / ".lykeion" / "runs"))),
            package_index=PackageIndex.from_env(env),
            ca_bundle=parse_ca_bundle(env),
        )


def parse_data_volume(text: str) -> dict[str, Any] | None:
    """`LYKEION_DATA_VOLUME` (a JSON object: one Kubernetes volume source) as data; ""
    gives None. Raises ValueError naming the variable when it is not a JSON object."""
    if not text.strip():
        return None
    try:
        loaded = json.loads(text)
    except ValueError as error:
        raise ValueError(f"LYKEION_DATA_VOLUME is not JSON: {error}") from error
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(
            "LYKEION_DATA_VOLUME must be a JSON object holding one volume source, "
            'e.g. {"persistentVolumeClaim": {"claimName": "lykeion-data"}}'
        )
    return loaded


def parse_ca_bundle(env: Mapping[str, str]) -> CaBundle | None:
    """The CA bundle named by `LYKEION_CA_BUNDLE_CONFIGMAP` or `LYKEION_CA_BUNDLE_SECRET`
    (the object's name) and `LYKEION_CA_BUNDLE_KEY` (its data key, default `ca.crt`); None
    when neither names an object. Raises ValueError naming the variable when both name one,
    when the name is not a DNS subdomain, when the key is empty or not a data key, or when a
    key is given without an object."""
    config_map = env.get("LYKEION_CA_BUNDLE_CONFIGMAP", "").strip()
    secret = env.get("LYKEION_CA_BUNDLE_SECRET", "").strip()
    key = env.get("LYKEION_CA_BUNDLE_KEY")
    if config_map and secret:
        raise ValueError(
            f"LYKEION_CA_BUNDLE_CONFIGMAP ({config_map!r}) and LYKEION_CA_BUNDLE_SECRET "
            f"({secret!r}) both name the CA bundle: set one (chart: workload.caBundle.configMap "
            "or workload.caBundle.secret)"
        )
    if not config_map and not secret:
        if key is not None and key.strip():
            raise ValueError(
                f"LYKEION_CA_BUNDLE_KEY is {key!r}, but neither LYKEION_CA_BUNDLE_CONFIGMAP "
                "nor LYKEION_CA_BUNDLE_SECRET names the object that holds it"
            )
        return None
    variable, name = (
        ("LYKEION_CA_BUNDLE_CONFIGMAP", config_map)
        if config_map
        else ("LYKEION_CA_BUNDLE_SECRET", secret)
    )
    if len(name) > 253 or not _OBJECT_NAME.match(name):
        raise ValueError(
            f"{variable}: {name!r} is not a ConfigMap or Secret name (lowercase letters, "
            "digits, '-' and '.', at most 253 characters), e.g. internal-ca"
        )
    key = CA_FILE if key is None else key.strip()
    if not key or len(key) > 253 or not _DATA_KEY.match(key):
        raise ValueError(
            f"LYKEION_CA_BUNDLE_KEY: {key!r} is not a key of {name}'s data (letters, digits, "
            "'-', '_' and '.'), e.g. ca.crt"
        )
    return CaBundle("configMap" if config_map else "secret", name, key)
