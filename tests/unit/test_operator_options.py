"""The operator's configuration is built once from its flags and environment and handed
down: `--kubeconfig` is never written back into `os.environ`, and kopf's login reads the
file the configuration names (`kube.kubeconfig_login`)."""

from __future__ import annotations

import os
from pathlib import Path

import kopf
import pytest
import yaml

from lykectl.embedded import KUBECONFIG_FILE, operator_env
from lykeion.kube import kubeconfig_login
from lykeion.operator_main import parse_options


def _kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_the_kubeconfig_flag_is_configuration_not_an_environment_write(tmp_path: Path) -> None:
    before = dict(os.environ)
    env = {"KUBECONFIG": "/from/env", "LYKEION_DATA_DIR": str(tmp_path)}
    options, _ = parse_options(["--kubeconfig", "/from/flag"], env)
    assert options.kubeconfig == "/from/flag"
    # Neither the given environment nor the process's own was changed.
    assert env == {"KUBECONFIG": "/from/env", "LYKEION_DATA_DIR": str(tmp_path)}
    assert dict(os.environ) == before
    assert parse_options([], env)[0].kubeconfig == "/from/env"
    assert parse_options([], {"KUBECONFIG": ""})[0].kubeconfig is None
    assert parse_options([], {})[0].kubeconfig is None
    assert parse_options([], env)[0].platform.data_dir == tmp_path


def test_login_reads_the_configured_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _kubeconfig(tmp_path / "config", "https://127.0.0.1:6443", "s3cret")
    found = kubeconfig_login(path)
    assert found is not None
    assert (found.server, found.scheme, found.token) == (
        "https://127.0.0.1:6443",
        "Bearer",
        "s3cret",
    )
    assert found.insecure is True
    # Two files joined by os.pathsep merge as kubectl merges them: the first one wins.
    other = _kubeconfig(tmp_path / "other", "https://10.0.0.1", "other")
    merged = kubeconfig_login(f"{path}{os.pathsep}{other}")
    assert merged is not None and merged.server == "https://127.0.0.1:6443"
    with pytest.raises(kopf.LoginError, match="missing"):
        kubeconfig_login(tmp_path / "missing")
    # No file configured: ~/.kube/config, and no credentials when it does not exist.
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kubeconfig_login(None) is None
    (tmp_path / ".kube").mkdir()
    _kubeconfig(tmp_path / ".kube" / "config", "https://home.example", "t")
    home = kubeconfig_login(None)
    assert home is not None and home.server == "https://home.example"


def test_the_embedded_operator_hands_its_kubeconfig_to_its_local_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator no longer writes --kubeconfig into its environment: `lykectl up` gives
    # its local runs (model servers' access reviews) the embedded one, over the caller's.
    monkeypatch.setenv("KUBECONFIG", "/callers/own")
    env = operator_env(tmp_path, "http://127.0.0.1:5000")
    assert env["KUBECONFIG"] == str(tmp_path / KUBECONFIG_FILE)


def test_a_setting_that_cannot_be_read_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options([], {"LYKEION_PACKAGE_INDEX_URL": "not a url"})
    assert exited.value.code == 2
    assert "LYKEION_PACKAGE_INDEX_URL" in capsys.readouterr().err
