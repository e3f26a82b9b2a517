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
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lykeion.readiness import NotReady, wait_until_answers

REPO_ROOT = Path(__file__).resolve().parents[2]
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
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ControlPlaneError(f"building the control plane failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the source ports of outgoing connections (Linux default
    32768-60999; IANA's 49152-65535 elsewhere)."""
    try:
        low, high = _EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port() -> int:
    """A TCP port no socket holds now, outside the kernel's ephemeral range.

    A port from the ephemeral range (what binding port 0 gives) can be taken, between the
    moment it is chosen and the moment a server binds it, by the source port of any
    outgoing connection on the machine, an API server's own connections to etcd
    included; a port below that range is only ever taken by a listener. Ports are
    checked free on every address (`0.0.0.0`, since the kubelet binds there) and never
    handed out twice by this process.

    Raises:
        OSError: no free port was found below the ephemeral range.
    """
    low, high = _ephemeral_range()
    candidates = range(10000, low) if low > 11000 else range(high + 1, 65536)
    rng = secrets.SystemRandom()
    for _ in range(200):
        port = rng.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free TCP port found in {candidates.start}-{candidates.stop - 1}")


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
        log = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(proc)
        self.by_name[name] = proc

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd keeps the data): an API server outage."""
        proc = self.by_name.pop("kube-apiserver", None)
        if proc is not None:
            terminate(proc)
            self.processes.remove(proc)

    def start_apiserver(self, timeout: float = 90.0) -> None:
        """Start kube-apiserver again on the same port after `stop_apiserver()`."""
        self._start_apiserver()
        self._wait_ready(timeout)

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"default={peer}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes",
                str(4 * 1024**3),
            ],
        )

    def _start_apiserver(self) -> None:
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        sa_key = certs / "sa.key"
        if not sa_key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True
            )
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
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "lykeion",
                    "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": "lykeion-admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "lykeion",
                    "context": {
                        "cluster": "lykeion",
                        "user": "lykeion-admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "lykeion",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

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
        done = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def install_crds(self, paths: Iterable[Path] | None = None, timeout: float = 60.0) -> None:
        """Server-side apply CRDs (the serving ones are too large for client-side apply)."""
        if paths is None:
            paths = [
                *sorted(LYKEION_CRDS.glob("*.yaml")),
                *sorted(third_party_crds().glob("*.yaml")),
            ]
        names = []
        for path in paths:
            self.run_kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=lykeion",
                "-f",
                str(path),
            )
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
            terminate(proc)
        self.processes.clear()
        self.by_name.clear()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def terminate(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM to the child's process group, SIGKILL after `timeout` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running(workdir: Path, install: bool = True) -> Iterator[ControlPlane]:
    """A started control plane with all CRDs installed, torn down on exit."""
    plane = ControlPlane(workdir).start()
    try:
        if install:
            plane.install_crds()
        yield plane
    finally:
        plane.stop()
