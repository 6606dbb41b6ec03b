"""Fuzz tests: hypothesis profiles and a shared folder for the files they write.

The suite runs each target on a fixed, derandomised budget (together about a minute). ``scripts/fuzz.sh`` runs
the same targets for longer with fresh randomness (FCN_FUZZ_PROFILE=long, FCN_FUZZ_EXAMPLES per target).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("suite", deadline=None, derandomize=True, database=None, suppress_health_check=_HEALTH,
                          print_blob=True)
settings.register_profile("long", deadline=None, derandomize=False, suppress_health_check=_HEALTH, print_blob=True)
settings.load_profile(os.environ.get("FCN_FUZZ_PROFILE", "suite"))


@pytest.fixture(scope="session")
def fuzz_dir(tmp_path_factory):
    """A folder for the files the fuzz targets read (one per example, overwritten)."""
    return tmp_path_factory.mktemp("fuzz")
