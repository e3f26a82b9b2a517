"""A real git server over SSH for tests: Debian's OpenSSH `sshd` on 127.0.0.1, a free port,
its own config and host key, a generated client key, and bare repositories in its home.

URLs keep the usual `git@<host>:<path>.git` form: the `git` account exists only for this
sshd (libnss_wrapper gives it a passwd entry mapped to the user running the tests), and
`<host>` is an alias of the client SSH configuration this server writes (`ssh_config`), as
a user's ~/.ssh/config would define it. Three aliases reach the same server:

- `GOOD` — the right key, the server's host key known;
- `WRONG_KEY` — a key the server does not accept;
- `UNKNOWN_HOST` — the right key, an empty known_hosts.

Started as a non-daemon child (`sshd -D`), stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lykeion.local.ports import free_port
from lykeion.local.processes import start as start_process
from lykeion.local.processes import stop as stop_process

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
NSS_WRAPPER = next(
    (
        str(p)
        for p in (
            Path("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"),
            Path("/usr/lib/aarch64-linux-gnu/libnss_wrapper.so"),
            Path("/usr/lib/libnss_wrapper.so"),
        )
        if p.exists()
    ),
    None,
)
GOOD = "lykeion-git"
WRONG_KEY = "lykeion-git-wrong-key"
UNKNOWN_HOST = "lykeion-git-unknown-host"


def missing() -> str | None:
    """Why this machine cannot run the server, or None."""
    if not Path(SSHD).exists():
        return "sshd not found: apt-get install -y openssh-server"
    if NSS_WRAPPER is None:
        return "libnss_wrapper not found: apt-get install -y libnss-wrapper"
    return None


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=ds@example.com", "-c", "user.name=ds", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@dataclass
class GitSshServer:
    root: Path
    """Holds the config, keys, log and the `git` account's home (its repositories)."""
    client_config: Path
    """The client SSH configuration to write (`ssh -F` it, e.g. in GIT_SSH_COMMAND)."""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    def _keygen(self, name: str) -> Path:
        key = self.root / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
            check=True,
        )
        return key

    def start(self, timeout: float = 20.0) -> GitSshServer:
        why = missing()
        if why is not None:
            raise RuntimeError(why)
        self.home.mkdir(parents=True)
        host_key = self._keygen("host_key")
        client_key = self._keygen("client_key")
        wrong_key = self._keygen("wrong_key")
        authorized = self.root / "authorized_keys"
        authorized.write_text((client_key.with_suffix(".pub")).read_text())
        authorized.chmod(0o600)
        uid, gid = os.getuid(), os.getgid()
        passwd = self.root / "passwd"
        passwd.write_text(
            Path("/etc/passwd").read_text() + f"git:x:{uid}:{gid}:git:{self.home}:/bin/sh\n"
        )
        group = self.root / "group"
        shutil.copy("/etc/group", group)
        config = self.root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {self.root / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nAllowUsers git\nLogLevel VERBOSE\n"
        )
        known = self.root / "known_hosts"
        public = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
        known.write_text(f"[127.0.0.1]:{self.port} {public}\n")
        (self.root / "empty_known_hosts").write_text("")
        self.client_config.parent.mkdir(parents=True, exist_ok=True)
        self.client_config.write_text(
            "".join(
                f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n"
                f"  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {hosts}\n"
                "  GlobalKnownHostsFile /dev/null\n"
                for alias, key, hosts in (
                    (GOOD, client_key, known),
                    ("127.0.0.1", client_key, known),  # for ssh://git@127.0.0.1:<port>/ URLs
                    (WRONG_KEY, wrong_key, known),
                    (UNKNOWN_HOST, client_key, self.root / "empty_known_hosts"),
                )
            )
        )
        if os.getuid() == 0:
            # sshd started by root separates privileges into this (compiled-in) directory.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        env = {
            **os.environ,
            "LD_PRELOAD": str(NSS_WRAPPER),
            "NSS_WRAPPER_PASSWD": str(passwd),
            "NSS_WRAPPER_GROUP": str(group),
        }
        self.process = start_process([SSHD, "-D", "-e", "-f", str(config)], self.log, env=env)
        deadline = time.monotonic() + timeout
        while "Server listening" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5):
            pass
        return self

    def repository(self, name: str, files: dict[str, bytes | str]) -> tuple[str, Path]:
        """A bare repository `<name>` in the server's home holding `files` in one commit;
        returns that commit's SHA and a work tree to commit more from."""
        work = self.root / "work" / name
        work.mkdir(parents=True)
        _git("init", "-q", "-b", "main", cwd=work)
        for relative, content in files.items():
            path = work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        _git("add", ".", cwd=work)
        _git("commit", "-qm", "first", cwd=work)
        bare = self.home / name
        _git("init", "-q", "--bare", str(bare), cwd=self.root)
        _git("push", "-q", str(bare), "main", cwd=work)
        return _git("rev-parse", "HEAD", cwd=work), work

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, grace=10)
