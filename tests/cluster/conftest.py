"""The cluster tests' control plane: started once per session by the tests, stopped after."""

from collections.abc import Iterator

import pytest

from hack.cluster import Cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real etcd + kube-apiserver with simulated nodes and pods (kwok)."""
    control_plane = Cluster(tmp_path_factory.mktemp("cluster"))
    control_plane.start()
    yield control_plane
    control_plane.stop()
