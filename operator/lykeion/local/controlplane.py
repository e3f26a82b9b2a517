"""A real local control plane: etcd and kube-apiserver on free 127.0.0.1 ports.

Used by the test fixtures and by `lykectl up`. There is no controller-manager, scheduler
or kubelet: objects are stored and validated, and whoever needs a Job "done" sets its
status, as envtest users do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lykeion.local import tools
from lykeion.local.ports import free_port
from lykeion.local.processes import start as start_process
from lykeion.local.processes import stop as stop_process
from lykeion.local.readiness import NotReady, wait_until_answers

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-control-plane.sh"
LYKEION_CRDS = REPO_ROOT / "crds"


def third_party_crds() -> Path:
    """Seldon's and KServe's real CRDs, read (never copied) from the workspace's
    `shared/third_party/crds/`: `$LYKEION_THIRD_PARTY_CRDS`, else the nearest such folder
    above the checkout (a clone elsewhere on the machine still finds it)."""
    given = os.environ.get("LYKEION_THIRD_PARTY_CRDS")
    candidates = [Path(given)] if given else []
    candidates += [parent / "shared" / "third_party" / "crds" for parent in REPO_ROOT.parents]
    candidates.append(Path("/work/shared/third_party/crds"))
    for candidate in candidates:
        if sorted(candidate.glob("*.yaml")):
            return candidate
    raise ControlPlaneError(
        "the Seldon and KServe CRDs were not found in shared/third_party/crds above "
        f"{REPO_ROOT}; set LYKEION_THIRD_PARTY_CRDS"
    )


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started."""


def binaries_dir() -> Path:
    """Build (once) and locate kube-apiserver, kubectl and etcd."""
    override = os.environ.get("LYKEION_CONTROL_PLANE_BIN")
    if override:
        return Path(override)
    return tools.script_output(BUILD_SCRIPT, "building the control plane", ControlPlaneError)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver in `workdir`; `kubeconfig` is admin (system:masters)."""

    workdir: Path
    bin_dir: Path = field(default_factory=binaries_dir)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    by_name: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    def start(self, timeout: float = 90.0) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self._start_etcd()
        self._start_apiserver()
        self._write_kubeconfig()
        self._wait_ready(timeout)
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        proc = start_process(args, self.workdir / "logs" / f"{name}.log")
        self.processes.append(proc)
        self.by_name[name] = proc

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd keeps the data): an API server outage."""
        proc = self.by_name.pop("kube-apiserver", None)
        if proc is not None:
            stop_process(proc)
            self.processes.remove(proc)

    def start_apiserver(self, timeout: float = 90.0) -> None:
        """Start kube-apiserver again on the same port after `stop_apiserver()`."""
        self._start_apiserver()
        self._wait_ready(timeout)

    def _start_etcd(self) -> None:
        self._spawn(
            "etcd",
            tools.etcd_command(
                self.bin_dir / "etcd",
                self.workdir / "etcd",
                self.etcd_port,
                self.etcd_peer_port,
                extra=["--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3)],
            ),
        )

    def _start_apiserver(self) -> None:
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        sa_key = certs / "sa.key"
        if not sa_key.exists():
            tools.openssl("genrsa", "-out", sa_key.name, "2048", cwd=certs)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},lykeion-admin,lykeion-admin,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={certs}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://lykeion.local",
                "--enable-priority-and-fairness=false",
                "--max-requests-inflight=2000",
                "--max-mutating-requests-inflight=1000",
                "--v=1",
            ],
        )

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            tools.kubeconfig(
                {"server": self.url, "insecure-skip-tls-verify": True},
                "lykeion-admin",
                {"token": self.token},
            )
        )

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        try:
            wait_until_answers(
                f"{self.url}/readyz",
                "the control plane (etcd, kube-apiserver)",
                self.processes,
                timeout,
                log=self.workdir / "logs",
                headers={"Authorization": f"Bearer {self.token}"},
                context=context,
            )
        except NotReady as error:
            self.stop()
            raise ControlPlaneError(str(error)) from None
        self._wait_default_namespace(deadline)

    def _wait_default_namespace(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.run_kubectl("get", "namespace", "default", check=False).returncode == 0:
                return
            time.sleep(0.25)
        raise ControlPlaneError("namespace default never appeared")

    def run_kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return tools.kubectl(
            self.kubectl, self.kubeconfig, *args, error=ControlPlaneError, stdin=stdin, check=check
        )

    def install_crds(self, paths: Iterable[Path] | None = None, timeout: float = 60.0) -> None:
        """Server-side apply CRDs (the serving ones are too large for client-side apply)."""
        if paths is None:
            paths = [
                *sorted(LYKEION_CRDS.glob("*.yaml")),
                *sorted(third_party_crds().glob("*.yaml")),
            ]
        names = []
        for path in paths:
            self.run_kubectl(*tools.server_side_apply("lykeion", str(path)))
            names += [
                doc["metadata"]["name"]
                for doc in yaml.safe_load_all(path.read_text())
                if doc and doc.get("kind") == "CustomResourceDefinition"
            ]
        self.run_kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={int(timeout)}s",
            *[f"crd/{n}" for n in names],
        )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)
        self.processes.clear()
        self.by_name.clear()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def running(
    workdir: Path, install: bool = True, crds: Iterable[Path] | None = None
) -> Iterator[ControlPlane]:
    """A started control plane with CRDs installed (`crds`, by default Lykeion's and the
    serving systems'; none when `install` is False), torn down on exit."""
    plane = ControlPlane(workdir).start()
    try:
        if install:
            plane.install_crds(crds)
        yield plane
    finally:
        plane.stop()
