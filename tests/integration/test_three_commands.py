"""Lykeion's original workflow, verbatim: three lykectl commands take a project from a git
repository served over SSH to a live endpoint, on the real API server and operator.

Only the host (an alias of the user's SSH configuration, tests/git_ssh.py), the path and the
SHA are filled in; the namespace comes from the kubeconfig's context, as for a user.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lykeion.local.controlplane import ControlPlane
from tests.git_ssh import GOOD, UNKNOWN_HOST, WRONG_KEY, GitSshServer
from tests.support import Cluster, Operator, load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "forward"
LYKECTL = str(Path(sys.executable).parent / "lykectl")
TIMEOUT = 300

FAMILY = (
    'lykectl families create --alias forward --name Forward --description "Forward test model" '
    '--authors "ds@example.com"'
)
CREATE = (
    'lykectl models create forward --segment default --version 1.0 --description "Version '
    'description" --source-url "git@{host}:{path}#mlprojects/forward@{sha}" --input-features '
    '"rider.age,rider.drop_offs_count"'
)
TRAIN = "lykectl models train forward --segment default --version 1.0"
DEPLOY = "lykectl models deploy forward --segment default --version 1.0"


def project_files() -> dict[str, bytes | str]:
    """The example's MLflow project (with its lykeion.yaml) at mlprojects/forward."""
    return {
        f"mlprojects/forward/{p.name}": p.read_bytes()
        for p in (EXAMPLE / "mlproject").iterdir()
        if p.is_file()
    }


@pytest.fixture
def shell(
    control_plane: ControlPlane,
    operator: Operator,
    git_ssh_server: GitSshServer,
    namespace: str,
    tmp_path: Path,
    cluster: Cluster,
) -> Any:
    """Runs a command line as a user's shell would, lykectl from this environment, with a
    kubeconfig whose context names the test's namespace."""
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    # The features the platform team published (not one of the three commands).
    cluster.create(load(EXAMPLE / "features.yaml")[0], namespace)
    cluster.wait_condition("FeatureManifest", namespace, "rider-activity", "True", timeout=90)

    def run(line: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        words = shlex.split(line)
        assert words[0] == "lykectl"
        done = subprocess.run(
            [LYKECTL, *words[1:]],
            capture_output=True,
            text=True,
            timeout=TIMEOUT + 60,
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "COLUMNS": "200"},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{line}\nfailed:\n{done.stdout}\n{done.stderr}")
        return done

    return run


def test_three_commands_from_an_ssh_repository_to_a_prediction(
    shell: Any, git_ssh_server: GitSshServer, cluster: Cluster, namespace: str
) -> None:
    sha, _ = git_ssh_server.repository("projects.git", project_files())
    shell(FAMILY)
    shell(CREATE.format(host=GOOD, path="projects.git", sha=sha))
    shell(TRAIN)
    # Deployed at once, as a user would: the Deployment is held until the version passes.
    shell(DEPLOY)
    model = cluster.wait_condition(
        "Model", namespace, "forward-default-1.0", "True", timeout=TIMEOUT
    )
    assert model["reason"] == "Ready"
    status = (cluster.get("Model", namespace, "forward-default-1.0") or {})["status"]
    assert status["sourceSha"] == sha
    origins = status["contract"]["origins"]
    assert (origins["labels"], origins["evaluation"]) == ("project", "project")
    assert origins["projectFile"] == (
        f"git@{GOOD}:projects.git#mlprojects/forward/lykeion.yaml@{sha}"
    )
    cluster.wait_condition("Deployment", namespace, "forward-default", "True", timeout=TIMEOUT)
    answer = json.loads(
        shell("lykectl predict forward --segment default --key rider_id=r42 -o json").stdout
    )
    assert answer["servedBy"] == "1.0"
    (prediction,) = answer["predictions"]
    # The probabilities of the classes (the example's pyfunc is predict_proba).
    assert prediction == pytest.approx([1 - prediction[-1], prediction[-1]])
    assert 0.0 < prediction[-1] < 1.0


@pytest.mark.parametrize(
    ("host", "path", "sha", "reason", "named"),
    [
        (WRONG_KEY, "projects-{n}.git", None, "GitAuthenticationFailed", "refused the SSH key"),
        (UNKNOWN_HOST, "projects-{n}.git", None, "HostKeyUnknown", "known_hosts"),
        (GOOD, "projects-{n}.git", "f" * 40, "CommitNotFound", "f" * 40),
        (GOOD, "projects-{n}.git#mlprojects/elsewhere", None, "SubdirectoryNotFound", "elsewhere"),
    ],
    ids=["wrong-key", "unknown-host-key", "missing-sha", "missing-subdirectory"],
)
def test_ssh_failures_are_a_trained_false_reason(
    shell: Any,
    git_ssh_server: GitSshServer,
    cluster: Cluster,
    namespace: str,
    host: str,
    path: str,
    sha: str | None,
    reason: str,
    named: str,
) -> None:
    repository = path.split("#")[0].format(n=namespace)
    pinned, _ = git_ssh_server.repository(repository, project_files())
    url_path = path.format(n=namespace)
    if "#" in url_path:
        # The subdirectory that does not exist replaces the one of the verbatim command.
        url_path, subdir = url_path.split("#")
        line = CREATE.replace("mlprojects/forward", subdir)
    else:
        line = CREATE
    shell(FAMILY)
    shell(line.format(host=host, path=url_path, sha=sha or pinned))
    done = shell(f"{TRAIN} --wait --timeout {TIMEOUT}", check=False)
    assert done.returncode == 1, done.stderr
    assert reason in done.stderr and named in done.stderr, done.stderr
    trained = cluster.condition("Model", namespace, "forward-default-1.0", "Trained")
    assert trained is not None and (trained["status"], trained["reason"]) == ("False", reason)
