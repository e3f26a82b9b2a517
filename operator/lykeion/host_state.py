"""What a one-node cluster changes on its host, recorded before and put back after.

containerd, runc, the CNI plugins, kubelet and kube-proxy change the host outside their
own directories: netfilter tables, sysctls, the `cni0` bridge, cgroups, and a few paths
they hard-code. `HostState.capture()` records those before the cluster starts;
`restore()` puts them back (idempotent, and it never raises: teardown must finish).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# Sysctls the cluster's parts set: the CNI bridge (ip_forward), kube-proxy
# (route_localnet, bridge-nf-call, conntrack), kubelet's kernel defaults (panic, overcommit,
# keys).
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)

# Paths that containerd 1.6's shims and runc (/run/containerd), libcni (/var/lib/cni,
# /etc/cni), kubelet (/var/lib/kubelet/device-plugins), netns handling (/run/netns) and
# buildah (/var/lib/containers, /run/containers) create whatever their configuration says.
HARD_CODED_PATHS = (
    "/run/containerd",
    "/var/lib/cni",
    "/etc/cni",
    "/var/lib/kubelet",
    "/run/netns",
    "/var/lib/containers",
    "/run/containers",
)

LINKS = ("cni0",)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


def nft_tables() -> dict[str, str]:
    """`family name` -> the table's ruleset (as `nft list table` prints it)."""
    listed = _run("nft", "list", "tables")
    tables = {}
    for line in listed.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table":
            key = f"{parts[1]} {parts[2]}"
            tables[key] = _run("nft", "list", "table", parts[1], parts[2]).stdout
    return tables


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of `roots`, deepest first."""
    found = []
    prefixes = [str(r).rstrip("/") for r in roots]
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_under(*roots: Path) -> None:
    for point in mounts_under(*roots):
        if _run("umount", point).returncode != 0:
            _run("umount", "-l", point)


@dataclass
class HostState:
    """A snapshot of what the cluster may change; `restore()` returns the host to it."""

    sysctls: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    absent_paths: list[str] = field(default_factory=list)
    absent_links: list[str] = field(default_factory=list)
    absent_cgroups: list[str] = field(default_factory=list)

    @classmethod
    def capture(cls) -> HostState:
        sysctls = {}
        for name in SYSCTLS:
            path = _sysctl_path(name)
            if path.exists():
                sysctls[name] = path.read_text().strip()
        cgroups = [
            str(d / "kubepods")
            for d in Path("/sys/fs/cgroup").iterdir()
            if d.is_dir() and not (d / "kubepods").exists()
        ]
        return cls(
            sysctls=sysctls,
            tables=nft_tables(),
            absent_paths=[p for p in HARD_CODED_PATHS if not os.path.lexists(p)],
            absent_links=[n for n in LINKS if not Path(f"/sys/class/net/{n}").exists()],
            absent_cgroups=cgroups,
        )

    def restore(self) -> list[str]:
        """Put the host back; returns what could not be restored (empty when all was)."""
        problems: list[str] = []
        for link in self.absent_links:
            if Path(f"/sys/class/net/{link}").exists():
                _run("ip", "link", "delete", link)
        self._restore_tables(problems)
        for name, value in self.sysctls.items():
            knob = _sysctl_path(name)
            with contextlib.suppress(OSError):
                if knob.read_text().strip() != value:
                    knob.write_text(value + "\n")
        for cgroup in self.absent_cgroups:
            _remove_cgroup(Path(cgroup))
        for path in self.absent_paths:
            unmount_under(Path(path))
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        problems += self.differences()
        return problems

    def _restore_tables(self, problems: list[str]) -> None:
        now = nft_tables()
        for key, rules in now.items():
            before = self.tables.get(key)
            if before == rules:
                continue
            family, name = key.split()
            _run("nft", "delete", "table", family, name)
            if before is not None:
                done = subprocess.run(
                    ["nft", "-f", "-"], input=before, capture_output=True, text=True, check=False
                )
                if done.returncode != 0:
                    problems.append(f"nft table {key} not restored: {done.stderr.strip()}")

    def differences(self) -> list[str]:
        """What differs from the snapshot now (empty when the host is as it was)."""
        after = HostState.capture()
        diffs = []
        for name, value in self.sysctls.items():
            if after.sysctls.get(name) != value:
                diffs.append(f"sysctl {name}={after.sysctls.get(name)} (was {value})")
        if after.tables.keys() != self.tables.keys():
            diffs.append(f"nft tables {sorted(after.tables)} (were {sorted(self.tables)})")
        diffs += [f"path {p} left" for p in self.absent_paths if p not in after.absent_paths]
        diffs += [f"link {n} left" for n in self.absent_links if n not in after.absent_links]
        diffs += [f"cgroup {c} left" for c in self.absent_cgroups if c not in after.absent_cgroups]
        return diffs


def _remove_cgroup(root: Path) -> None:
    """rmdir a cgroup tree depth-first (cgroup directories cannot be removed recursively)."""
    if not root.is_dir():
        return
    for dirpath, _dirnames, _files in sorted(os.walk(root), key=lambda item: -item[0].count("/")):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
