"""A real one-node Kubernetes cluster on this machine (Linux, root).

etcd, kube-apiserver (service accounts, Node + RBAC authorization, kubelet client
certificates), kube-controller-manager, kube-scheduler, containerd + runc + the CNI bridge,
kubelet, kube-proxy (iptables) and CoreDNS. Binaries come from
`scripts/build-control-plane.sh` and `scripts/build-node.sh` (built once, cached under
~/.cache/lykeion); workload images are docker-archives (`scripts/build-images.sh`)
imported into containerd. Every port is a free one, so the test suite's other API servers
never clash; the settings this host needs (cgroup v1, no CAP_SYS_RESOURCE) come from
`shared/notes/one-node-cluster/README.md`.

`stop()` tears everything down and puts the host back as `HostState` found it: processes
by PID, containerd's shims, mounts, netfilter tables, the `cni0` bridge, kubepods cgroups,
sysctls and the paths the runtime hard-codes. One cluster per host at a time (the bridge,
/run/containerd and netfilter are host-wide): a lock file serialises sessions.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import ipaddress
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from lykeion.host_state import HostState, unmount_under
from lykeion.local import tools
from lykeion.local.controlplane import REPO_ROOT, binaries_dir
from lykeion.local.ports import free_port
from lykeion.local.processes import start as start_process
from lykeion.local.processes import stop as stop_process

log = logging.getLogger("lykeion.cluster")

NODE_BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-node.sh"
IMAGES_BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-images.sh"
CACHE = Path(os.environ.get("LYKEION_CACHE", str(Path.home() / ".cache" / "lykeion")))
LOCK_FILE = CACHE / "cluster.lock"
SHIM = "containerd-shim-runc-v2"
CNI_BIN_DIR = Path("/usr/lib/cni")
HOST_TOOLS = ("containerd", "runc", "ctr", "iptables", "nft", "ip", "openssl", SHIM)


class ClusterError(RuntimeError):
    """The cluster could not be built, started or reached; the message says which part."""


def unsupported_reason() -> str | None:
    """Why a cluster cannot run on this host (None when it can): Linux, root, the Debian
    packages `containerd runc containernetworking-plugins iptables nftables`."""
    if platform.system() != "Linux":
        return f"a one-node cluster needs Linux, not {platform.system()}"
    if os.geteuid() != 0:
        return "a one-node cluster needs root (containerd, netfilter, the cni0 bridge)"
    missing = [t for t in HOST_TOOLS if not _which(t)]
    if not (CNI_BIN_DIR / "bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        return (
            f"missing on this host: {', '.join(missing)} (apt-get install containerd runc "
            "containernetworking-plugins iptables nftables)"
        )
    return None


def _which(tool: str) -> bool:
    return any(
        os.access(Path(d) / tool, os.X_OK)
        for d in [*os.environ.get("PATH", "").split(":"), "/usr/sbin", "/sbin"]
    )


def node_binaries_dir() -> Path:
    """Build (once) and locate kubelet, kube-controller-manager, kube-scheduler,
    kube-proxy, coredns and pause (`$LYKEION_NODE_BIN` overrides)."""
    override = os.environ.get("LYKEION_NODE_BIN")
    if override:
        return Path(override)
    return tools.script_output(NODE_BUILD_SCRIPT, "building the node binaries", ClusterError)


@dataclass(frozen=True)
class BuiltImage:
    """One image built from the Dockerfile: `target` (operator, workloads, training,
    serving), its reference in containerd and the docker-archive it is imported from."""

    target: str
    image: str
    archive: Path


def build_images(targets: Sequence[str] = ()) -> dict[str, BuiltImage]:
    """Build (or find cached) the Dockerfile's images; `targets` as `name=extras`."""
    done = subprocess.run(
        ["bash", str(IMAGES_BUILD_SCRIPT), *targets], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ClusterError(f"building the images failed:\n{done.stderr[-4000:]}")
    images = {}
    for line in done.stdout.splitlines():
        target, image, archive = line.split()
        images[target] = BuiltImage(target, image, Path(archive))
    return images


def host_ip() -> str:
    """The address of the interface that holds the default route (the node's InternalIP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("198.51.100.1", 9))  # TEST-NET-2; nothing is sent, the route is looked up
        return str(s.getsockname()[0])


def single_binary_image(binary: Path, name: str, entrypoint: Sequence[str], user: str) -> Path:
    """A docker-archive of an image holding one static binary at `/<binary name>` (the
    pause sandbox, CoreDNS), written once into the cache; returns its path. Pure file
    work: no registry, no buildah."""
    data = binary.read_bytes()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(binary.name)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "User": user, "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    out = CACHE / "images" / f"{name.rsplit('/', 1)[-1].replace(':', '-')}-{diff_id[7:19]}.tar"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = [{"Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"]}]
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for member, content in (
            ("layer.tar", layer_bytes),
            ("config.json", config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    tmp.rename(out)
    return out


@dataclass
class Ports:
    """Every listening port of the cluster: free ones, never the Kubernetes defaults."""

    etcd: int = field(default_factory=free_port)
    etcd_peer: int = field(default_factory=free_port)
    etcd_metrics: int = field(default_factory=free_port)
    apiserver: int = field(default_factory=free_port)
    controller_manager: int = field(default_factory=free_port)
    scheduler: int = field(default_factory=free_port)
    kubelet: int = field(default_factory=free_port)
    kubelet_healthz: int = field(default_factory=free_port)
    proxy_healthz: int = field(default_factory=free_port)
    proxy_metrics: int = field(default_factory=free_port)


@dataclass
class NodeCluster:
    """A one-node cluster with its state in `workdir`; `kubeconfig` is the admin's
    (system:masters, client certificate). `images` are docker-archives imported into
    containerd at start (those already present are skipped)."""

    workdir: Path
    images: Sequence[Path] = ()
    control_plane_bin: Path = field(default_factory=binaries_dir)
    node_bin: Path = field(default_factory=node_binaries_dir)
    node_name: str = "lykeion-node"
    node_ip: str = field(default_factory=host_ip)
    service_cidr: str = "10.96.0.0/16"
    pod_cidr: str = "10.244.0.0/24"
    cluster_domain: str = "cluster.local"
    containerd_root: Path = CACHE / "containerd"
    ports: Ports = field(default_factory=Ports)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    host: HostState | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _lock: IO[str] | None = None

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.node_ip}:{self.ports.apiserver}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfigs" / "admin.conf"

    @property
    def kubectl(self) -> Path:
        return self.control_plane_bin / "kubectl"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    @property
    def dns_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[10])

    @property
    def api_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[1])

    @property
    def pause_image(self) -> str:
        return f"localhost/lykeion-pause:{_content_tag(self.node_bin / 'pause')}"

    @property
    def coredns_image(self) -> str:
        return f"localhost/lykeion-coredns:{_content_tag(self.node_bin / 'coredns')}"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 180.0, lock_timeout: float = 1800.0) -> NodeCluster:
        """Start every part and wait for a Ready node, CoreDNS and the default service
        account. Raises ClusterError (after tearing down what was started)."""
        why = unsupported_reason()
        if why:
            raise ClusterError(why)
        self._acquire_lock(lock_timeout)
        begin = time.monotonic()
        try:
            self.host = HostState.capture()
            # a fresh cluster every start, also in a workdir used before (PKI is kept)
            unmount_under(self.workdir)
            for stale in ("etcd", "run", "kubelet", "cni/ipam", "pod-logs"):
                shutil.rmtree(self.workdir / stale, ignore_errors=True)
            for sub in ("logs", "pki", "kubeconfigs", "cni/net.d", "kubelet", "pod-logs"):
                (self.workdir / sub).mkdir(parents=True, exist_ok=True)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_pki()
            self._write_configs()
            self._start_containerd(timeout)
            self._import_images()
            self.timings["containerd"] = time.monotonic() - begin
            self._start_etcd()
            self._start_apiserver(timeout)
            self.timings["apiserver"] = time.monotonic() - begin
            self._start_node_components()
            self._wait_node_ready(timeout)
            self.timings["node_ready"] = time.monotonic() - begin
            self._start_coredns(timeout)
            self.timings["dns_ready"] = time.monotonic() - begin
        except BaseException:
            self.stop()
            raise
        return self

    def _acquire_lock(self, timeout: float) -> None:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        handle = open(LOCK_FILE, "a+")  # noqa: SIM115 - held until stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise ClusterError(
                        f"another one-node cluster holds {LOCK_FILE} (one per host)"
                    ) from None
                time.sleep(2)
        self._lock = handle

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.processes[name] = start_process(
            args, self.workdir / "logs" / f"{name}.log", env={**os.environ, **(env or {})}
        )

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ClusterError(f"{name} exited with code {proc.returncode}:\n{tail}")

    def _wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout:.0f}s waiting for {what}; "
                    f"logs in {self.workdir / 'logs'}"
                )
            time.sleep(0.3)

    # -- certificates and configuration --------------------------------------------------

    def _write_pki(self) -> None:
        p = self.pki
        # the kubeconfigs name this start's API server port: written every time
        for user in ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet-client"):
            self._write_kubeconfig(user)
        if (p / "ca.crt").exists():
            return

        def ossl(*args: str) -> None:
            tools.openssl(*args, cwd=p)

        ossl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/CN=lykeion-cluster-ca",
        )
        node_sans = f"DNS:{self.node_name},DNS:localhost,IP:127.0.0.1,IP:{self.node_ip}"
        api_sans = ",".join(
            [
                f"DNS:kubernetes{s}"
                for s in ("", ".default", ".default.svc", f".default.svc.{self.cluster_domain}")
            ]
            + [f"IP:{self.api_service_ip}", node_sans]
        )
        certs = [
            ("apiserver", "/CN=kube-apiserver", api_sans, "serverAuth"),
            ("admin", "/O=system:masters/CN=lykeion-admin", "", "clientAuth"),
            (
                "apiserver-kubelet-client",
                "/O=system:masters/CN=kube-apiserver-kubelet-client",
                "",
                "clientAuth",
            ),
            ("controller-manager", "/CN=system:kube-controller-manager", "", "clientAuth"),
            ("scheduler", "/CN=system:kube-scheduler", "", "clientAuth"),
            ("kube-proxy", "/CN=system:kube-proxy", "", "clientAuth"),
            (
                "kubelet-client",
                f"/O=system:nodes/CN=system:node:{self.node_name}",
                "",
                "clientAuth",
            ),
            ("kubelet-serving", f"/CN={self.node_name}", node_sans, "serverAuth"),
        ]
        for name, subject, sans, usage in certs:
            ext = [
                "basicConstraints=CA:FALSE",
                "keyUsage=critical,digitalSignature,keyEncipherment",
                f"extendedKeyUsage={usage}",
            ] + ([f"subjectAltName={sans}"] if sans else [])
            (p / f"{name}.ext").write_text("\n".join(ext) + "\n")
            ossl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                subject,
            )
            ossl(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "30",
                "-extfile",
                f"{name}.ext",
            )
        ossl("genrsa", "-out", "sa.key", "2048")
        ossl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def _write_kubeconfig(self, user: str) -> None:
        (self.workdir / "kubeconfigs" / f"{user}.conf").write_text(
            tools.kubeconfig(
                {"server": self.url, "certificate-authority": str(self.pki / "ca.crt")},
                user,
                {
                    "client-certificate": str(self.pki / f"{user}.crt"),
                    "client-key": str(self.pki / f"{user}.key"),
                },
            )
        )

    def _write_configs(self) -> None:
        w, sock = self.workdir, self.containerd_socket
        # restrict_oom_score_adj: without CAP_SYS_RESOURCE runc cannot lower oom_score_adj
        # and every sandbox fails ("can't get final child's PID from pipe: EOF").
        (w / "containerd.toml").write_text(f'''version = 2
root = "{self.containerd_root}"
state = "{self.run_dir / "containerd"}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{self.pause_image}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_BIN_DIR}"
      conf_dir = "{w / "cni" / "net.d"}"
      max_conf_num = 1
  [plugins."io.containerd.internal.v1.opt"]
    path = "{w / "opt"}"
''')
        conflist = {
            "cniVersion": "1.0.0",
            "name": "lykeion",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(w / "cni" / "ipam"),
                        "ranges": [[{"subnet": self.pod_cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (w / "cni" / "net.d" / "10-lykeion.conflist").write_text(json.dumps(conflist, indent=2))
        pki = self.pki
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroup v1 host and containerd 1.x: kubelet's own cgroupfs driver.
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{sock}",
            "imageServiceEndpoint": f"unix://{sock}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "address": "0.0.0.0",
            "port": self.ports.kubelet,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports.kubelet_healthz,
            "readOnlyPort": 0,
            "clusterDomain": self.cluster_domain,
            "clusterDNS": [self.dns_ip],
            "podLogsDir": str(w / "pod-logs"),
            "failSwapOn": False,
            "serializeImagePulls": False,
            # the images are local: never garbage-collect them under a test
            "imageGCHighThresholdPercent": 100,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
            },
            "protectKernelDefaults": False,
        }
        (w / "kubelet.yaml").write_text(yaml.safe_dump(kubelet))
        proxy = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(w / "kubeconfigs" / "kube-proxy.conf")},
            "mode": "iptables",
            "clusterCIDR": self.pod_cidr,
            "hostnameOverride": self.node_name,
            "bindAddress": "0.0.0.0",
            "healthzBindAddress": f"127.0.0.1:{self.ports.proxy_healthz}",
            "metricsBindAddress": f"127.0.0.1:{self.ports.proxy_metrics}",
            # leave the host's conntrack sysctls and route_localnet alone
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False},
        }
        (w / "kube-proxy.yaml").write_text(yaml.safe_dump(proxy))

    # -- the parts ---------------------------------------------------------------------

    def _start_containerd(self, timeout: float) -> None:
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        self._spawn("containerd", ["containerd", "--config", str(self.workdir / "containerd.toml")])
        self._wait("containerd's socket", self.containerd_socket.exists, timeout)
        self._wait(
            "containerd to answer",
            lambda: self.ctr("version", check=False).returncode == 0,
            timeout,
        )

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ctr` against this cluster's containerd, namespace k8s.io (the CRI's)."""
        command = ["ctr", "-a", str(self.containerd_socket), "-n", "k8s.io", *args]
        return tools.run(command, error=ClusterError, what=f"ctr {' '.join(args)}", check=check)

    def _import_images(self) -> None:
        archives = [
            single_binary_image(
                self.node_bin / "pause", self.pause_image, ["/pause"], "65535:65535"
            ),
            single_binary_image(self.node_bin / "coredns", self.coredns_image, ["/coredns"], "0:0"),
            *self.images,
        ]
        present = set(self.ctr("images", "ls", "-q").stdout.split())
        # containerd's store persists in the cache: drop our images of earlier builds
        wanted = {tag for archive in archives for tag in _archive_tags(archive)}
        stale = stale_images(self.ctr("images", "ls").stdout, wanted)
        if stale:
            # --sync: collect their content and snapshots now. Left to the background
            # collector, a teardown right after kept them: 35 GB of earlier builds filled
            # the disk here and the kubelet evicted pods for ephemeral storage.
            self.ctr("images", "rm", "--sync", *stale, check=False)
        for archive in archives:
            names = _archive_tags(archive)
            if names and all(n in present for n in names):
                continue
            self.ctr("images", "import", str(archive))
            # a reference to an image that is still being imported cannot be pinned: check
            missing = [
                n for n in names if n not in set(self.ctr("images", "ls", "-q").stdout.split())
            ]
            if missing:
                raise ClusterError(f"importing {archive} did not give {missing}")

    def _start_etcd(self) -> None:
        self._spawn(
            "etcd",
            tools.etcd_command(
                self.control_plane_bin / "etcd",
                self.workdir / "etcd",
                self.ports.etcd,
                self.ports.etcd_peer,
                name="lykeion",
                extra=[
                    "--listen-metrics-urls",
                    f"http://127.0.0.1:{self.ports.etcd_metrics}",
                    "--unsafe-no-fsync",
                ],
            ),
        )

    def _start_apiserver(self, timeout: float) -> None:
        p = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.control_plane_bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports.etcd}",
                f"--secure-port={self.ports.apiserver}",
                "--bind-address=0.0.0.0",
                f"--advertise-address={self.node_ip}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--service-account-issuer=https://kubernetes.default.svc.{self.cluster_domain}",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={p / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--v=1",
            ],
        )
        self._wait(
            "kube-apiserver /readyz",
            lambda: self.run_kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
            timeout,
        )

    def _start_node_components(self) -> None:
        k, p, w = self.workdir / "kubeconfigs", self.pki, self.workdir
        cm = str(k / "controller-manager.conf")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.node_bin / "kube-controller-manager"),
                f"--kubeconfig={cm}",
                f"--authentication-kubeconfig={cm}",
                f"--authorization-kubeconfig={cm}",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={p / 'ca.crt'}",
                f"--cluster-signing-key-file={p / 'ca.key'}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--allocate-node-cidrs=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.controller_manager}",
                "--leader-elect=false",
            ],
        )
        sc = str(k / "scheduler.conf")
        self._spawn(
            "kube-scheduler",
            [
                str(self.node_bin / "kube-scheduler"),
                f"--kubeconfig={sc}",
                f"--authentication-kubeconfig={sc}",
                f"--authorization-kubeconfig={sc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.scheduler}",
                "--leader-elect=false",
            ],
        )
        self._spawn(
            "kubelet",
            [
                str(self.node_bin / "kubelet"),
                f"--config={w / 'kubelet.yaml'}",
                f"--kubeconfig={k / 'kubelet-client.conf'}",
                f"--root-dir={w / 'kubelet'}",
                f"--hostname-override={self.node_name}",
                f"--node-ip={self.node_ip}",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-proxy",
            [
                str(self.node_bin / "kube-proxy"),
                f"--config={w / 'kube-proxy.yaml'}",
            ],
        )

    def _wait_node_ready(self, timeout: float) -> None:
        def ready() -> bool:
            done = self.run_kubectl(
                "get",
                "node",
                self.node_name,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            return done.stdout.strip() == "True"

        self._wait(f"node {self.node_name} Ready", ready, timeout)
        self._wait(
            "the default service account",
            lambda: (
                self.run_kubectl("get", "serviceaccount", "default", check=False).returncode == 0
            ),
            timeout,
        )

    def _start_coredns(self, timeout: float) -> None:
        self.apply(coredns_manifests(self.coredns_image, self.dns_ip, self.cluster_domain))
        self.run_kubectl(
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            f"--timeout={int(timeout)}s",
        )

    # -- use -------------------------------------------------------------------------

    def run_kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return tools.kubectl(
            self.kubectl,
            self.kubeconfig,
            *args,
            error=ClusterError,
            stdin=stdin,
            check=check,
            timeout=timeout,
        )

    def apply(self, manifests: Sequence[dict[str, Any]]) -> None:
        """Server-side apply `manifests` as the admin."""
        self.run_kubectl(
            *tools.server_side_apply("lykeion-cluster", "-"), stdin=yaml.safe_dump_all(manifests)
        )

    # -- teardown --------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Tear everything down and restore the host; returns what differs from before
        (empty when the host is as it was). Never raises."""
        problems: list[str] = []
        try:
            self._stop_workloads()
            for name in (
                "kube-controller-manager",
                "kube-scheduler",
                "kube-proxy",
                "kubelet",
                "kube-apiserver",
                "etcd",
            ):
                self._stop_process(name)
            self._stop_containers()
            self._stop_process("containerd")
            self._kill_leftovers()
            unmount_under(self.workdir)
            if self.host is not None:
                problems = self.host.restore()
        finally:
            self.processes.clear()
            if self._lock is not None:
                self._lock.close()
                self._lock = None
        for problem in problems:
            log.warning("host not fully restored: %s", problem)
        return problems

    def _alive(self, name: str) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def _stop_process(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            stop_process(proc, grace=20)

    def _stop_workloads(self) -> None:
        """Delete every pod through kubelet (CNI DEL frees IPs and portmap rules) with the
        controllers stopped first, so nothing is recreated."""
        if not (self._alive("kube-apiserver") and self._alive("kubelet")):
            return
        for name in ("kube-controller-manager", "kube-scheduler"):
            self._stop_process(name)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.run_kubectl(
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=1",
                "--wait=true",
                "--timeout=60s",
                check=False,
                timeout=90,
            )

    def _stop_containers(self) -> None:
        if not self._alive("containerd"):
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "rm", "-f", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "rm", container, check=False)

    def _kill_leftovers(self) -> None:
        """Shims of this containerd (their command line names its socket) and processes
        left in the kubepods cgroups this cluster created, by PID."""
        socket_path = str(self.containerd_socket)
        ours_cgroup = self.host is not None and any(
            c.endswith("/kubepods") for c in self.host.absent_cgroups
        )
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
                cgroups = (proc_dir / "cgroup").read_text()
            except OSError:
                continue
            shim = SHIM in cmdline.split("\0")[0] and socket_path in cmdline
            in_pods = ours_cgroup and ":/kubepods" in cgroups
            if shim or in_pods:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc_dir.name), signal.SIGKILL)


def _content_tag(binary: Path) -> str:
    """A tag naming the binary's content: a rebuilt binary is a new image, never a stale
    one found under the same tag in containerd's persistent store."""
    return hashlib.sha256(binary.read_bytes()).hexdigest()[:12]


def stale_images(listing: str, wanted: set[str]) -> list[str]:
    """The references to remove from the cluster's containerd store (pure), given `ctr
    images ls` output `listing` (a header, then `REF TYPE DIGEST ...` per image) and the
    references of the images this cluster runs: our images of earlier builds
    (`localhost/lykeion-*` not wanted), and the CRI's references by image ID
    (`sha256:<config digest>`, one it adds for every image a pod used) whose manifest
    digest no wanted reference has. Left, the second kind kept every earlier build's
    layers: 11 GB of content for three builds in one cache."""
    rows = [line.split() for line in listing.splitlines()[1:] if line.strip()]
    kept = {row[2] for row in rows if len(row) > 2 and row[0] in wanted}
    stale = []
    for row in rows:
        ref, digest = row[0], row[2] if len(row) > 2 else ""
        earlier_build = ref.startswith("localhost/lykeion-") and ref not in wanted
        earlier_id = ref.startswith("sha256:") and digest not in kept
        if earlier_build or earlier_id:
            stale.append(ref)
    return stale


def _archive_tags(archive: Path) -> list[str]:
    """RepoTags of a docker-archive."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            return []
        manifest = json.load(member)
    return [tag for entry in manifest for tag in entry.get("RepoTags") or []]


def coredns_manifests(image: str, dns_ip: str, domain: str) -> list[dict[str, Any]]:
    """CoreDNS as cluster DNS (pure): service account and RBAC, Corefile, Deployment,
    the kube-dns Service at `dns_ip`."""
    labels = {"k8s-app": "kube-dns"}
    ns = "kube-system"
    corefile = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
    loadbalance
}}
"""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": ns},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "volumeMounts": [
                                    {
                                        "name": "config",
                                        "mountPath": "/etc/coredns",
                                        "readOnly": True,
                                    }
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 1,
                                },
                                # root for port 53 (containerd 1.6 grants no ambient caps)
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                },
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {
                "clusterIP": dns_ip,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
    ]


@contextlib.contextmanager
def running(workdir: Path, images: Sequence[Path] = ()) -> Iterator[NodeCluster]:
    """A started one-node cluster, torn down (host restored) on exit."""
    cluster = NodeCluster(workdir, images=images).start()
    try:
        yield cluster
    finally:
        cluster.stop()


__all__ = [
    "BuiltImage",
    "ClusterError",
    "NodeCluster",
    "build_images",
    "coredns_manifests",
    "node_binaries_dir",
    "running",
    "single_binary_image",
    "unsupported_reason",
]
