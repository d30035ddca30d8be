"""The cluster tests' control plane: the session's, started by the tests themselves."""

import pytest

from hack.cluster import Cluster
from tests.support.control_plane import session_cluster


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """The local control plane (shared with tests/pipeline)."""
    return session_cluster(pytestconfig, tmp_path_factory)
