"""The README's main command, end to end: scripts/demo.sh, then `lykectl down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from lykectl.http import kubeconfig_token

ROOT = Path(__file__).resolve().parents[2]
LYKECTL = str(Path(sys.executable).parent / "lykectl")


def test_demo_brings_the_example_to_ready_and_down_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "lykeion-home"
    env = {
        **os.environ,
        "LYKEION_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "demo.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # Only the key went in; the answer names the features the server looked up.
        answer = done.stdout.split("== a prediction", 1)[1].split("==", 1)[0]
        assert "rider_id=r42" in answer and "RIDER__AVG_FARE" in answer, answer
        table = done.stdout.split("== what the cluster now holds", 1)[1]
        for name in (
            "deployment.lykeion.io/forward-default",
            "featuremanifest.lykeion.io/rider-activity",
            "modelfamily.lykeion.io/forward",
            "model.lykeion.io/forward-default-1.0",
        ):
            line = next(row for row in table.splitlines() if row.startswith(name))
            assert " True " in line, line
        pids = [p["pid"] for p in json.loads((home / "platform.json").read_text())["processes"]]
        assert len(pids) == 5  # etcd, kube-apiserver, MLflow, operator, Feature API

        # Again, on the running platform: every step finds what the first run made.
        again = subprocess.run(
            ["bash", str(ROOT / "scripts" / "demo.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already exists" not in again.stdout + again.stderr
        assert "modelfamily.lykeion.io/forward unchanged" in again.stdout
        assert "rider_id=r42" in again.stdout.split("== a prediction", 1)[1]
        assert [
            p["pid"] for p in json.loads((home / "platform.json").read_text())["processes"]
        ] == pids

        # The endpoint asks who calls it, as in a cluster: no token is a 401, the
        # kubeconfig's token (what lykectl sends) is served.
        kubeconfig = str(home / "kubeconfig")
        shown = subprocess.run(
            [LYKECTL, "deployments", "get", "forward-default", "-o", "json",
             "--kubeconfig", kubeconfig],
            capture_output=True, text=True, env=env, timeout=60, check=True,
        )  # fmt: skip
        endpoint = json.loads(shown.stdout)["status"]["endpoint"]
        body = {"keys": [{"rider_id": "r42"}]}
        assert httpx.post(f"{endpoint}/predict", json=body, timeout=30).status_code == 401
        token = kubeconfig_token(kubeconfig)
        assert token
        served = httpx.post(
            f"{endpoint}/predict",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert served.status_code == 200, served.text
    finally:
        subprocess.run([LYKECTL, "down", "--purge"], env=env, capture_output=True, timeout=120)
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
        )
    assert not (home / "platform.json").exists()
