from pathlib import Path

import pytest

from bench.data.datasets import embedded_dataset, mini_spec


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def mini(cache_dir):
    """The tiny embedded dataset (a few seconds to generate), shared by the session."""
    return embedded_dataset(cache_dir, mini_spec(), "openmoji5i-mini")
