"""Shared test fixtures, and the gate for the tests that need real data.

Real data (DAVIS 2016 480p with OSVOS results, 80 COCO val2017 images; non-commercial licenses, never copied into
the repository) is read from ONE folder: ``$STEADYSEG_SHARED_DATA``, by default ``../shared/data`` beside the
repository. ``docs/data.md`` says where the data sets come from and how to lay them out. Every test reaches the
data through the fixtures below (``davis2016``, ``davis_osvos``, ``coco80``, or ``shared_data`` for the root).

When a data set is missing:

- under CI (``CI`` set to ``true``/``1``/``yes``) the tests that need it FAIL, never skip, and the run exits
  non-zero;
- elsewhere those tests are deselected (reported as "deselected", not run), the synthetic suite runs, and the
  session ends with one line saying which real-data tests did not run and what they need; the exit status is 0
  when everything that ran passed.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV = "STEADYSEG_SHARED_DATA"
DATA_DOC = "docs/data.md"

# fixture name -> (folder under the data root, paths inside it that must exist)
REAL_DATA: dict[str, tuple[str, tuple[str, ...]]] = {
    "davis2016": ("davis2016", ("JPEGImages/480p", "Annotations/480p")),
    "davis_osvos": ("davis2017-osvos", ("blackswan",)),
    "coco80": ("coco-val2017-80", ("annotations/instances_val2017.json", "val2017")),
}

_DESELECTED = pytest.StashKey[int]()


def shared_data_dir() -> Path:
    """The real-data root: ``$STEADYSEG_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get(DATA_ENV) or REPO_ROOT.parent / "shared" / "data").resolve()


def running_in_ci() -> bool:
    """True when the ``CI`` environment variable is set to a true value (``true``, ``1``, ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing_data(root: Path) -> dict[str, str]:
    """Fixture name -> what is missing, for every real-data fixture whose data set is absent under ``root``.

    ``shared_data`` (the root itself) is listed when the root folder does not exist.
    """
    missing = {}
    if not root.is_dir():
        missing["shared_data"] = f"{root} (the data root)"
    for fixture, (folder, required) in REAL_DATA.items():
        absent = [p for p in required if not (root / folder / p).exists()]
        if absent:
            missing[fixture] = f"{root / folder / absent[0]}"
    return missing


def _what_is_needed(root: Path) -> str:
    return (f"DAVIS 2016 480p sequences with OSVOS results and COCO val2017 images + annotations, laid out as in "
            f"{DATA_DOC}, in the folder named by {DATA_ENV} (now {root})")


def _require(fixture: str) -> Path:
    root = shared_data_dir()
    problem = missing_data(root).get(fixture)
    if problem is not None:
        pytest.fail(f"real test data not found: {problem}. This test needs {_what_is_needed(root)}.", pytrace=False)
    return root if fixture == "shared_data" else root / REAL_DATA[fixture][0]


@pytest.fixture(autouse=True)
def _private_steadyseg_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own steadyseg cache root (``STEADYSEG_CACHE_DIR``, inherited by subprocesses), so no test
    reads or writes the user's persistent cache (``~/.cache/steadyseg``)."""
    monkeypatch.setenv("STEADYSEG_CACHE_DIR", str(tmp_path_factory.mktemp("steadyseg-cache")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data root folder (fails when it is absent)."""
    return _require("shared_data")


@pytest.fixture(scope="session")
def davis2016() -> Path:
    """``<root>/davis2016``: ``JPEGImages/480p/<seq>/%05d.jpg`` and ``Annotations/480p/<seq>/%05d.png``."""
    return _require("davis2016")


@pytest.fixture(scope="session")
def davis_osvos() -> Path:
    """``<root>/davis2017-osvos``: OSVOS predictions ``<seq>/%05d.png`` (palette PNGs) for the DAVIS sequences."""
    return _require("davis_osvos")


@pytest.fixture(scope="session")
def coco80() -> Path:
    """``<root>/coco-val2017-80``: ``val2017/*.jpg`` and ``annotations/instances_val2017.json``."""
    return _require("coco80")


def pytest_collection_modifyitems(session, config, items):
    """Outside CI, deselect the tests whose real data is missing (under CI they run, and fail in the fixture)."""
    config.stash[_DESELECTED] = 0
    if running_in_ci():
        return
    missing = missing_data(shared_data_dir())
    if not missing:
        return
    keep, drop = [], []
    for item in items:
        (drop if missing.keys() & set(getattr(item, "fixturenames", ())) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        config.stash[_DESELECTED] = len(drop)


def pytest_sessionfinish(session, exitstatus):
    """A run whose only tests were deselected for missing data is not an error outside CI."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and session.config.stash.get(_DESELECTED, 0):
        session.exitstatus = pytest.ExitCode.OK


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.stash.get(_DESELECTED, 0)
    if n:
        root = shared_data_dir()
        terminalreporter.write_line(
            f"REAL-DATA TESTS NOT RUN: {n} test{'s were' if n != 1 else ' was'} deselected because the real data is missing; they need "
            f"{_what_is_needed(root)}. Under CI=true they fail instead.", yellow=True, bold=True)


# ---------------------------------------------------------------------------------------------------------------
# FiftyOne: ONE private mongod per test session (tests/curation, tests/reliability), a unique database, datasets
# dropped at the end. The FiftyOne variables are set before anything imports fiftyone (FiftyOne reads them at
# import time), so every test talks to this server only; nothing touches the user's ~/.fiftyone database.
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fo_env(tmp_path_factory):
    """Start mongod, point FiftyOne at it (unique database name, tracking off); drop everything afterwards."""
    from steadyseg.curation.env import start_mongod

    if "fiftyone" in __import__("sys").modules:
        pytest.fail("fiftyone was imported before the curation test session configured its database")
    handle = start_mongod(tmp_path_factory.mktemp("mongod"))
    env = handle.env(f"steadyseg-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import fiftyone as fo

        yield fo
        fo.delete_datasets("*")
    finally:
        handle.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def dataset_name(fo_env, request):
    """A fresh dataset name for one test; the dataset is deleted after the test."""
    name = f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    yield name
    if fo_env.dataset_exists(name):
        fo_env.delete_dataset(name)
