"""One local control plane per test session, shared by the test folders that ask for it.

Not in tests/conftest.py: app:test:job runs tests/app and tests/server with that conftest,
where the cluster's dependencies are not installed.
"""

import pytest

from hack.cluster import Cluster

STARTED = pytest.StashKey[Cluster]()


def session_cluster(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """The session's control plane, started by the first folder's tests that need it (real
    etcd, kube-apiserver, controller-manager, scheduler; nodes and pods simulated by kwok) and
    stopped when the session ends."""
    if STARTED not in config.stash:
        control_plane = Cluster(tmp_path_factory.mktemp("cluster"))
        config.add_cleanup(control_plane.stop)
        control_plane.start()
        config.stash[STARTED] = control_plane
    return config.stash[STARTED]
