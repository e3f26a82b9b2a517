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


_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"


def _listing(rows: list[tuple[str, str]]) -> str:
    """`ctr images ls` output for (ref, manifest digest) rows."""
    lines = ["REF TYPE DIGEST SIZE PLATFORMS LABELS"]
    lines += [
        f"{ref} {_MEDIA} {digest} 1.2 GiB linux/amd64 io.cri-containerd.image=managed"
        for ref, digest in rows
    ]
    return "\n".join(lines) + "\n"


def test_stale_images_are_earlier_builds_and_the_cri_ids_no_wanted_image_has() -> None:
    now, before, older = "sha256:" + "7" * 64, "sha256:" + "e" * 64, "sha256:" + "b" * 64
    listing = _listing(
        [
            ("localhost/lykeion-serving:new", now),
            ("localhost/lykeion-serving:old", before),
            ("localhost/lykeion-pause:p", "sha256:" + "1" * 64),
            ("sha256:" + "c" * 64, now),  # the CRI's ID of the wanted serving image
            ("sha256:" + "a" * 64, before),  # of the build before
            ("sha256:" + "d" * 64, older),  # of a build whose tag is gone already
            ("sha256:" + "f" * 64, "sha256:" + "1" * 64),  # of the wanted pause image
        ]
    )
    wanted = {"localhost/lykeion-serving:new", "localhost/lykeion-pause:p"}
    assert sorted(cluster.stale_images(listing, wanted)) == sorted(
        ["localhost/lykeion-serving:old", "sha256:" + "a" * 64, "sha256:" + "d" * 64]
    )
    # Nothing listed, or only what is wanted: nothing to remove.
    assert cluster.stale_images("REF TYPE DIGEST\n", wanted) == []
    assert cluster.stale_images(_listing([("localhost/lykeion-serving:new", now)]), wanted) == []
