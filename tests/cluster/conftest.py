"""A real one-node cluster for the session (tests marked `cluster`), with the images built
from the Dockerfile imported into its containerd.

Not root or not Linux: the tests skip with the reason, except under `.ci/run`
(LYKEION_REQUIRE_CLUSTER=1), where a missing cluster is a failure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from lykeion.cluster import BuiltImage, NodeCluster, build_images, unsupported_reason
from lykeion.host_state import HostState


@pytest.fixture(scope="session")
def cluster_images() -> dict[str, BuiltImage]:
    why = unsupported_reason()
    if why:
        if os.environ.get("LYKEION_REQUIRE_CLUSTER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return build_images()


@pytest.fixture(scope="session")
def node_cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_images: dict[str, BuiltImage]
) -> Iterator[NodeCluster]:
    before = HostState.capture()
    cluster = NodeCluster(
        tmp_path_factory.mktemp("node-cluster"),
        images=[image.archive for image in cluster_images.values()],
    ).start()
    # How long each part took to come up (seconds from the start), for the README's figures.
    (cluster.workdir / "timings.json").write_text(json.dumps(cluster.timings, indent=2))
    yield cluster
    problems = cluster.stop()
    # The host is as it was: no bridge, netfilter tables, sysctls, paths or cgroups left.
    assert problems == [], problems
    assert before.differences() == []
