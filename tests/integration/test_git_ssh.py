"""SSH git sources against a real sshd (tests/git_ssh.py): the pinned commit is exported,
and each way it can fail is a reason of its own, in seconds, never a hang."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lykeion.training import source
from lykeion.training.source import SourceError, resolve
from tests.git_ssh import GOOD, UNKNOWN_HOST, WRONG_KEY, GitSshServer, _git


@pytest.fixture
def ssh_env(git_ssh_server: GitSshServer, monkeypatch: pytest.MonkeyPatch) -> GitSshServer:
    """This process's git uses the server's client configuration, as a user's would."""
    monkeypatch.setenv("GIT_SSH_COMMAND", f"ssh -F {git_ssh_server.client_config}")
    return git_ssh_server


@pytest.fixture
def repo(ssh_env: GitSshServer, request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """`<name>.git` with ml/forward at two commits: (name, first SHA, second SHA)."""
    name = f"{request.node.name.split('[')[0].replace('_', '-')}-{time.monotonic_ns()}.git"
    first, work = ssh_env.repository(
        name, {"ml/forward/MLproject": "name: forward\n", "ml/forward/train.py": "v1\n"}
    )
    (work / "ml" / "forward" / "train.py").write_text("v2\n")
    _git("commit", "-qam", "second", cwd=work)
    _git("push", "-q", str(ssh_env.home / name), "main", cwd=work)
    return name, first, _git("rev-parse", "HEAD", cwd=work)


def test_the_pinned_commit_is_exported_over_ssh(
    repo: tuple[str, str, str], ssh_env: GitSshServer, tmp_path: Path
) -> None:
    name, first, second = repo
    cache = tmp_path / "cache"
    old = resolve(f"git@{GOOD}:{name}#ml/forward@{first}", cache, tmp_path)
    assert old.revision == first and (old.directory / "train.py").read_text() == "v1\n"
    # ssh:// with the port in the URL reaches the same repository by absolute path.
    url = f"ssh://git@127.0.0.1:{ssh_env.port}{ssh_env.home / name}#ml/forward@{second}"
    new = resolve(url, tmp_path / "other-cache", tmp_path)
    assert new.revision == second and (new.directory / "train.py").read_text() == "v2\n"
    log = ssh_env.log.read_text()
    assert "Accepted publickey for git from 127.0.0.1" in log


@pytest.mark.parametrize(
    ("host", "path", "revision", "reason", "named"),
    [
        (WRONG_KEY, "ml/forward", "first", "GitAuthenticationFailed", "refused the SSH key"),
        (UNKNOWN_HOST, "ml/forward", "first", "HostKeyUnknown", "known_hosts"),
        (GOOD, "ml/forward", "0" * 40, "CommitNotFound", "0" * 40),
        (GOOD, "ml/nowhere", "first", "SubdirectoryNotFound", "ml/nowhere"),
    ],
)
def test_each_failure_names_the_problem(
    repo: tuple[str, str, str],
    tmp_path: Path,
    host: str,
    path: str,
    revision: str,
    reason: str,
    named: str,
) -> None:
    name, first, _ = repo
    sha = first if revision == "first" else revision
    started = time.monotonic()
    with pytest.raises(SourceError) as raised:
        resolve(f"git@{host}:{name}#{path}@{sha}", tmp_path / "cache", tmp_path)
    assert (raised.value.reason, time.monotonic() - started < 30) == (reason, True)
    assert named in str(raised.value)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_server_that_never_answers_is_a_timeout_not_a_hang(
    ssh_env: GitSshServer, silent_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source, "SSH_CONNECT_TIMEOUT_SECONDS", 2)
    started = time.monotonic()
    with pytest.raises(SourceError) as raised:
        resolve(
            f"ssh://git@127.0.0.1:{silent_server}/x.git#ml@{'1' * 40}", tmp_path / "c", tmp_path
        )
    assert raised.value.reason == "RepositoryUnreachable"
    assert time.monotonic() - started < 20


def test_the_users_ssh_options_come_after_the_guards() -> None:
    command = source.ssh_command("ssh -F '/my config' -o StrictHostKeyChecking=no", 7)
    assert command.startswith("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes")
    assert "ConnectTimeout=7" in command
    assert command.endswith("-F '/my config' -o StrictHostKeyChecking=no")
    assert source.ssh_command(None, 7).split()[0] == "ssh"


def test_a_mirror_that_cannot_be_refreshed_says_why(
    repo: tuple[str, str, str], ssh_env: GitSshServer, tmp_path: Path
) -> None:
    name, first, _ = repo
    cache = tmp_path / "cache"
    resolve(f"git@{GOOD}:{name}#ml/forward@{first}", cache, tmp_path)
    # The repository moves away on the server: a commit not in the mirror cannot be fetched,
    # and that is what the reason says (not that the commit does not exist).
    (ssh_env.home / name).rename(ssh_env.home / f"{name}.moved")
    with pytest.raises(SourceError) as raised:
        resolve(f"git@{GOOD}:{name}#ml/forward@{'e' * 40}", cache, tmp_path)
    assert raised.value.reason == "RepositoryNotFound"
    # What the mirror already holds is still exported without the server.
    again = resolve(f"git@{GOOD}:{name}#ml/forward@{first}", tmp_path / "cache", tmp_path)
    assert again.revision == first
