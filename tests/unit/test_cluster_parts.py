"""Pure parts of the one-node cluster: the single-binary image archives and CoreDNS."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from lykeion import cluster
from lykeion.cluster import coredns_manifests, single_binary_image


def test_single_binary_image_is_a_docker_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "CACHE", tmp_path / "cache")
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    out = single_binary_image(binary, "localhost/p:1", ["/pause"], "65535:65535")
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile("config.json"))  # type: ignore[arg-type]
        layer = tar.extractfile("layer.tar").read()  # type: ignore[union-attr]
    assert manifest == [
        {"Config": "config.json", "RepoTags": ["localhost/p:1"], "Layers": ["layer.tar"]}
    ]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["config"]["User"] == "65535:65535"
    with tarfile.open(fileobj=__import__("io").BytesIO(layer)) as inner:
        member = inner.getmember("pause")
        assert member.mode == 0o755
        assert inner.extractfile(member).read() == b"\x7fELF not really"  # type: ignore[union-attr]
    # cached: same binary, same file, not rewritten
    mtime = out.stat().st_mtime_ns
    assert single_binary_image(binary, "localhost/p:1", ["/pause"], "65535:65535") == out
    assert out.stat().st_mtime_ns == mtime


def test_coredns_serves_the_cluster_domain_at_the_dns_service_ip() -> None:
    objects = coredns_manifests("localhost/coredns:1", "10.96.0.10", "cluster.local")
    by_kind = {o["kind"]: o for o in objects}
    assert by_kind["Service"]["spec"]["clusterIP"] == "10.96.0.10"
    assert "kubernetes cluster.local in-addr.arpa" in by_kind["ConfigMap"]["data"]["Corefile"]
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    # upstream resolution from the node, not from itself (a loop)
    assert pod["dnsPolicy"] == "Default"
    assert pod["containers"][0]["imagePullPolicy"] == "Never"
    selector = by_kind["Deployment"]["spec"]["selector"]["matchLabels"]
    assert by_kind["Service"]["spec"]["selector"] == selector
