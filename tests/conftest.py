"""Shared test fixtures.

Real data lives in ``../shared/data`` (read-only, non-commercial licenses: never copied into the repository).
Tests that need it FAIL with a clear message when it is absent instead of skipping silently; set
``STEADYSEG_SHARED_DATA`` to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("STEADYSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "davis2016").is_dir():
        pytest.fail(f"real test data not found at {root} (expected ../shared/data beside the repository, "
                    "or set STEADYSEG_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def davis2016(shared_data) -> Path:
    return shared_data / "davis2016"


@pytest.fixture(scope="session")
def davis_osvos(shared_data) -> Path:
    return shared_data / "davis2017-osvos"


@pytest.fixture(scope="session")
def coco80(shared_data) -> Path:
    return shared_data / "coco-val2017-80"


DAVIS_SEQUENCES = ["blackswan", "bmx-trees", "camel", "car-shadow", "dog", "horsejump-high", "kite-surf", "libby"]
