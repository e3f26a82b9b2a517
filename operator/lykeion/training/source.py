"""Where a Model's code comes from, pinned: `<git-url>#<subdir>@<SHA>` or `file://<path>`.

A git source is fetched into a cache (one bare mirror per repository) and exported at
exactly that commit; a local path records its git SHA when its tree is clean, else a
content hash. Every failure is a `SourceError` with a CamelCase reason for the condition.

SSH URLs (`git@host:path.git`, `ssh://[user@]host[:port]/path.git`) go through the ssh
that GIT_SSH_COMMAND names (default `ssh`: the user's ~/.ssh/config and agent locally; on
Kubernetes the executor points it at the Secret's key and known_hosts), hardened so that
nothing waits for a human or forever: BatchMode=yes (no prompts), StrictHostKeyChecking=yes
(an unknown host key is an error, never accepted), ConnectTimeout and keep-alives, and a
deadline on every git command (`GIT_TIMEOUT_SECONDS`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_GIT = re.compile(r"^(?P<repo>[^#\s]+)#(?P<subdir>[^@#\s]*)@(?P<sha>[0-9a-f]{40})$")
_SKIP = {".git", "__pycache__", "mlruns", ".ipynb_checkpoints"}
GIT_TIMEOUT_SECONDS = 300.0
"""Deadline of one git network command (clone, fetch)."""
SSH_CONNECT_TIMEOUT_SECONDS = 15
"""ssh's ConnectTimeout: the TCP connection and the banner exchange."""
# What ssh and git print (lower case), mapped to the condition's reason; first match wins.
_FAILURES = (
    ("host key verification failed", "HostKeyUnknown",
     "the server's host key is not in known_hosts, or it changed"),
    ("permission denied (", "GitAuthenticationFailed", "the server refused the SSH key"),
    ("authentication failed", "GitAuthenticationFailed", "the server refused the credentials"),
    ("could not read username", "GitAuthenticationFailed", "the server asks for credentials"),
    ("does not appear to be a git repository", "RepositoryNotFound", "no such repository"),
    ("repository not found", "RepositoryNotFound", "no such repository"),
    ("connection timed out", "RepositoryUnreachable", "the server did not answer in time"),
)  # fmt: skip


class SourceError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ResolvedSource:
    directory: Path
    """The MLflow project directory (holds `MLproject`)."""
    revision: str
    """The 40-hex git SHA, or `sha256:<hex>` of the files when not a clean git tree."""


def ssh_command(configured: str | None, connect_timeout: int = SSH_CONNECT_TIMEOUT_SECONDS) -> str:
    """GIT_SSH_COMMAND with the guards of the module docstring in front of the user's
    options (pure). `configured` is the environment's GIT_SSH_COMMAND (None: `ssh`)."""
    words = shlex.split(configured) if configured else ["ssh"]
    # In front of the user's options: for ssh the first value given for an option wins.
    guards = (
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
    )  # fmt: skip
    return shlex.join([words[0], *guards, *words[1:]])


def git_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The environment of git's network commands: never prompt, hardened ssh (pure)."""
    return {
        **base,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": ssh_command(base.get("GIT_SSH_COMMAND"), SSH_CONNECT_TIMEOUT_SECONDS),
        # Plain ssh, even when GIT_SSH_COMMAND names a wrapper: our -o options are ssh's.
        "GIT_SSH_VARIANT": base.get("GIT_SSH_VARIANT", "ssh"),
        # HTTP(S): give up on a transfer slower than 1 KB/s for 60 s.
        "GIT_HTTP_LOW_SPEED_LIMIT": base.get("GIT_HTTP_LOW_SPEED_LIMIT", "1000"),
        "GIT_HTTP_LOW_SPEED_TIME": base.get("GIT_HTTP_LOW_SPEED_TIME", "60"),
    }


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def _remote_git(repo: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A git command that talks to `repo`; SourceError on its deadline or a known failure."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env=git_environment(os.environ),
            timeout=GIT_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as error:
        raise SourceError(
            "RepositoryTimeout", f"git {args[0]} of {repo} took over {GIT_TIMEOUT_SECONDS:g}s"
        ) from error
    if done.returncode != 0:
        text = done.stderr.strip()
        for needle, reason, meaning in _FAILURES:
            if needle in text.lower():
                raise SourceError(reason, f"cannot fetch {repo}: {meaning}: {text[-500:]}")
    return done


def content_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory)
        if _SKIP & set(relative.parts):
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def _require_project(directory: Path) -> Path:
    if not directory.is_dir():
        raise SourceError("SourceNotFound", f"{directory} does not exist")
    if not (directory / "MLproject").is_file():
        raise SourceError("MLprojectMissing", f"no MLproject file in {directory}")
    return directory


def _local(path_text: str, data_root: Path) -> ResolvedSource:
    path = Path(path_text)
    directory = _require_project(path if path.is_absolute() else data_root / path)
    top = _git("rev-parse", "--show-toplevel", cwd=directory)
    if top.returncode == 0:
        dirty = _git("status", "--porcelain", "--", ".", cwd=directory)
        head = _git("rev-parse", "HEAD", cwd=directory)
        if dirty.returncode == 0 and not dirty.stdout.strip() and head.returncode == 0:
            return ResolvedSource(directory, head.stdout.strip())
    # Not a git tree, or changed since the last commit: the files themselves are the version.
    return ResolvedSource(directory, content_hash(directory))


def _git_source(repo: str, subdir: str, sha: str, cache: Path) -> ResolvedSource:
    # Keyed by repository and commit: a commit fetched from one repository (with its
    # credentials) is never handed out for another URL.
    repo_key = hashlib.sha256(repo.encode()).hexdigest()[:16]
    exported = cache / "sources" / f"{repo_key}-{sha}"
    if not exported.exists():
        mirror = cache / "repos" / repo_key
        if not mirror.exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            try:
                cloned = _remote_git(repo, "clone", "--bare", "--quiet", repo, str(mirror))
            except SourceError:
                shutil.rmtree(mirror, ignore_errors=True)
                raise
            if cloned.returncode != 0:
                shutil.rmtree(mirror, ignore_errors=True)
                raise SourceError(
                    "RepositoryUnreachable", f"cannot clone {repo}: {cloned.stderr.strip()[-500:]}"
                )
        if _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=mirror).returncode != 0:
            # A commit pushed since the mirror was made: fetch it, else every branch and tag.
            fetched = _remote_git(repo, "fetch", "--quiet", "origin", sha, cwd=mirror)
            if fetched.returncode != 0:
                every = _remote_git(
                    repo, "fetch", "--quiet", "origin", "+refs/*:refs/*", cwd=mirror
                )
                if every.returncode != 0:
                    raise SourceError(
                        "RepositoryUnreachable",
                        f"cannot fetch {repo}: {every.stderr.strip()[-500:]}",
                    )
            if _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=mirror).returncode != 0:
                raise SourceError("CommitNotFound", f"commit {sha} is not in {repo}")
        # Export into a temporary folder first, so that a crash never leaves half a tree.
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=".export-"))
        archive = staging / "tree.tar"
        done = _git("archive", "--format=tar", "-o", str(archive), sha, cwd=mirror)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise SourceError("CommitNotFound", f"cannot export {sha}: {done.stderr.strip()}")
        tree = staging / "tree"
        with tarfile.open(archive) as tar:
            _extract(tar, tree)
        exported.parent.mkdir(parents=True, exist_ok=True)
        tree.rename(exported)
        shutil.rmtree(staging, ignore_errors=True)
    directory = exported / subdir if subdir else exported
    if subdir and not directory.is_dir():
        raise SourceError(
            "SubdirectoryNotFound", f"{repo} has no directory {subdir!r} at commit {sha}"
        )
    return ResolvedSource(_require_project(directory), sha)


def _extract(tar: tarfile.TarFile, into: Path) -> None:
    """Extract `tar` into `into`, refusing members that would land outside it. Python's
    "data" filter does this from 3.11.4 on; Debian bookworm's Python (3.11.2, the images'
    base) has no filters, so the same rules are checked here first: no absolute or `..`
    paths, links only to paths inside, regular files, directories and links only."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
        return
    root = into.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise SourceError("UnsafeSource", f"{member.name}: not a file, directory or link")
        if member.name.startswith("/") or not target.is_relative_to(root):
            raise SourceError("UnsafeSource", f"{member.name} would land outside the source")
        if member.issym() or member.islnk():
            base = target.parent if member.issym() else root
            if not (base / member.linkname).resolve().is_relative_to(root):
                raise SourceError("UnsafeSource", f"{member.name} links outside the source")
    tar.extractall(into)  # every member checked above


def resolve(url: str, cache: Path, data_root: Path) -> ResolvedSource:
    """The project directory and exact revision of `url` (see the module docstring).

    A URL pinned to a commit (`...#<subdir>@<SHA>`) is a git source whatever its scheme,
    `file:///srv/repo.git#dir@SHA` included; an unpinned `file://` URL is a local path."""
    match = _GIT.match(url)
    if match is None and url.startswith("file://"):
        return _local(url[len("file://") :], data_root)
    if match is None:
        raise SourceError(
            "InvalidSource", f"{url!r} is neither <git-url>#<subdir>@<sha> nor file://"
        )
    return _git_source(match["repo"], match["subdir"], match["sha"], cache)
