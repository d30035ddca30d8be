"""The registry tests' real registry: started once per session, stopped after."""

from collections.abc import Iterator

import pytest

from tests.registry.registrylib import Registry, running_registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry on loopback with TLS and htpasswd authentication."""
    with running_registry(tmp_path_factory.mktemp("registry")) as started:
        yield started
