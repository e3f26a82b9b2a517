"""A private CA bundle from a ConfigMap or Secret, as the `kubernetes` executor mounts it into
the pods it renders (pure builders): one read-only file at `CA_PATH` and the variables
that make pip, uv, git, requests, MLflow's client and Python's `ssl` verify with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

CA_DIR = "/etc/lykeion/ca"
CA_FILE = "ca.crt"
CA_PATH = f"{CA_DIR}/{CA_FILE}"
"""Where the bundle is in every container that mounts it, whatever its key is called."""
CA_VOLUME = "ca-bundle"
CA_VARIABLES = (
    # OpenSSL's default CA file: Python's `ssl` default context (urllib, httpx), uv.
    "SSL_CERT_FILE",
    # requests (so also google-auth and MLflow's REST client), instead of certifi's bundle.
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    # git over HTTPS (git sources).
    "GIT_SSL_CAINFO",
    # MLflow's own setting for its tracking and registry server (`verify` of its requests).
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    # boto3 (MLflow's S3 artifact store, e.g. MinIO behind the private CA).
    "AWS_CA_BUNDLE",
)
"""The variables set to `CA_PATH`. Each replaces its reader's default trust store, so the
bundle must hold the public roots as well when the workloads reach public hosts."""


@dataclass(frozen=True)
class CaBundle:
    """A CA bundle (PEM) in a ConfigMap or Secret of the same name in every workload
    namespace (chart: `workload.caBundle`; `lykeion.config.parse_ca_bundle` reads it)."""

    kind: Literal["configMap", "secret"]
    """Which object holds the bundle."""
    name: str
    """Its name (a DNS subdomain)."""
    key: str = CA_FILE
    """The key of its data that holds the PEM file; mounted as `CA_PATH` whatever it is."""

    def volume(self) -> dict[str, Any]:
        """The pod volume: only `key`, as the file `CA_FILE`, readable by every user (a CA
        certificate is public; the pods run as a non-root user)."""
        items = [{"key": self.key, "path": CA_FILE}]
        if self.kind == "secret":
            source = {"secret": {"secretName": self.name, "items": items, "defaultMode": 0o444}}
        else:
            source = {"configMap": {"name": self.name, "items": items, "defaultMode": 0o444}}
        return {"name": CA_VOLUME, **source}

    def mount(self) -> dict[str, Any]:
        """The container's read-only mount of `volume` at `CA_DIR`."""
        return {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}

    def env(self) -> dict[str, str]:
        """Each of `CA_VARIABLES` set to `CA_PATH`."""
        return dict.fromkeys(CA_VARIABLES, CA_PATH)
