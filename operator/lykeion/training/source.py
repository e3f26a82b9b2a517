"""Where a Model's code comes from, pinned: `<git-url>#<subdir>@<SHA>` or `file://<path>`.

A git source is fetched into a cache (one bare mirror per repository) and exported at
exactly that commit; a local path records its git SHA when its tree is clean, else a
content hash. Every failure is a `SourceError` with a CamelCase reason for the condition.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

_GIT = re.compile(r"^(?P<repo>[^#\s]+)#(?P<subdir>[^@#\s]*)@(?P<sha>[0-9a-f]{40})$")
_SKIP = {".git", "__pycache__", "mlruns", ".ipynb_checkpoints"}


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


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


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
    exported = cache / "sources" / sha
    if not exported.exists():
        mirror = cache / "repos" / hashlib.sha256(repo.encode()).hexdigest()[:16]
        if not mirror.exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            cloned = _git("clone", "--bare", "--quiet", repo, str(mirror))
            if cloned.returncode != 0:
                shutil.rmtree(mirror, ignore_errors=True)
                raise SourceError(
                    "RepositoryUnreachable", f"cannot clone {repo}: {cloned.stderr.strip()[-500:]}"
                )
        if _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=mirror).returncode != 0:
            _git("fetch", "--quiet", "origin", sha, cwd=mirror)
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
            tar.extractall(tree, filter="data")
        exported.parent.mkdir(parents=True, exist_ok=True)
        tree.rename(exported)
        shutil.rmtree(staging, ignore_errors=True)
    return ResolvedSource(_require_project(exported / subdir if subdir else exported), sha)


def resolve(url: str, cache: Path, data_root: Path) -> ResolvedSource:
    """The project directory and exact revision of `url` (see the module docstring)."""
    if url.startswith("file://"):
        return _local(url[len("file://") :], data_root)
    match = _GIT.match(url)
    if match is None:
        raise SourceError(
            "InvalidSource", f"{url!r} is neither <git-url>#<subdir>@<sha> nor file://"
        )
    return _git_source(match["repo"], match["subdir"], match["sha"], cache)
