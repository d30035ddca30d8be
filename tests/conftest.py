"""Fixtures shared by every test folder."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top folder."""
    return ROOT


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The local control plane (real etcd, kube-apiserver, controller-manager, scheduler;
    nodes and pods simulated by kwok), started once for the session by the tests themselves."""
    control_plane = Cluster(tmp_path_factory.mktemp("cluster"))
    control_plane.start()
    yield control_plane
    control_plane.stop()
