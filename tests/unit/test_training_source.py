"""Source pinning against real git repositories made in tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lykeion.training.source import SourceError, content_hash, resolve


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    root = tmp_path / "projects"
    (root / "ml" / "forward").mkdir(parents=True)
    (root / "ml" / "forward" / "MLproject").write_text("name: forward\n")
    (root / "ml" / "forward" / "train.py").write_text("print('v1')\n")
    _git("init", "-q", cwd=root)
    _git("add", ".", cwd=root)
    _git("commit", "-qm", "v1", cwd=root)
    first = _git("rev-parse", "HEAD", cwd=root)
    (root / "ml" / "forward" / "train.py").write_text("print('v2')\n")
    _git("commit", "-qam", "v2", cwd=root)
    second = _git("rev-parse", "HEAD", cwd=root)
    return root, first, second


def test_git_source_is_exported_at_exactly_that_commit(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, first, second = repo
    cache = tmp_path / "cache"
    old = resolve(f"{root}#ml/forward@{first}", cache, tmp_path)
    new = resolve(f"{root}#ml/forward@{second}", cache, tmp_path)
    assert (old.revision, new.revision) == (first, second)
    assert (old.directory / "train.py").read_text() == "print('v1')\n"
    assert (new.directory / "train.py").read_text() == "print('v2')\n"
    assert resolve(f"{root}#ml/forward@{first}", cache, tmp_path).directory == old.directory
    # A file:// repository URL pinned to a commit is git too, not a local path.
    pinned = resolve(f"file://{root}#ml/forward@{first}", cache, tmp_path)
    assert pinned.revision == first
    assert (pinned.directory / "train.py").read_text() == "print('v1')\n"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("{root}#ml/forward@" + "0" * 40, "CommitNotFound"),
        ("{tmp}/no-such-repo#ml@" + "0" * 40, "RepositoryUnreachable"),
        ("{root}#ml@{first}", "MLprojectMissing"),
        ("{root}#nowhere@{first}", "SubdirectoryNotFound"),
        ("file://{tmp}/missing", "SourceNotFound"),
    ],
)
def test_failures_have_reasons(
    repo: tuple[Path, str, str], tmp_path: Path, url: str, reason: str
) -> None:
    root, first, _ = repo
    with pytest.raises(SourceError) as raised:
        resolve(url.format(root=root, tmp=tmp_path, first=first), tmp_path / "cache", tmp_path)
    assert raised.value.reason == reason


def test_local_path_records_git_sha_when_clean_else_content_hash(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, _, second = repo
    assert resolve("file://ml/forward", tmp_path / "cache", root).revision == second
    (root / "ml" / "forward" / "train.py").write_text("print('edited')\n")
    dirty = resolve(f"file://{root}/ml/forward", tmp_path / "cache", tmp_path)
    assert dirty.revision == content_hash(root / "ml" / "forward")
    assert dirty.revision.startswith("sha256:")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "MLproject").write_text("name: p\n")
    assert resolve(f"file://{plain}", tmp_path / "cache", tmp_path).revision == content_hash(plain)


def test_extraction_without_tar_filters_refuses_what_the_data_filter_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian bookworm's Python 3.11.2 (the images' base) has no tar filters: the fallback
    checks the same rules itself (found by the first training Job in the cluster)."""
    import io
    import tarfile

    from lykeion.training.source import _extract

    monkeypatch.delattr(tarfile, "data_filter")

    def archive(*members: tuple[str, str | None]) -> tarfile.TarFile:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, link in members:
                info = tarfile.TarInfo(name)
                if link is None:
                    info.size = 2
                    tar.addfile(info, io.BytesIO(b"ok"))
                else:
                    info.type, info.linkname = tarfile.SYMTYPE, link
                    tar.addfile(info)
        buffer.seek(0)
        return tarfile.open(fileobj=buffer)

    _extract(archive(("p/MLproject", None), ("p/link", "MLproject")), tmp_path / "good")
    assert (tmp_path / "good" / "p" / "MLproject").read_text() == "ok"
    for bad in (("../escape", None), ("/abs", None), ("p/out", "../../etc/passwd")):
        with pytest.raises(SourceError) as error:
            _extract(archive(bad), tmp_path / "bad")
        assert error.value.reason == "UnsafeSource"
