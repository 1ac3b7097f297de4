"""The real-data gate of tests/conftest.py: skipped with one clear line outside CI, failing under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

TESTS = '''
def test_synthetic():
    assert 1 + 1 == 2


def test_needs_davis(davis2016):
    assert davis2016.is_dir()


def test_needs_coco(coco80):
    assert coco80.is_dir()
'''


def _run(tmp_path: Path, data_root: Path, ci: str | None, *args: str) -> subprocess.CompletedProcess:
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    shutil.copy(CONFTEST, suite / "conftest.py")
    (suite / "test_gate.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["STEADYSEG_SHARED_DATA"] = str(data_root)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite),
                           *args, str(suite)],
                          cwd=suite, env=env, capture_output=True, text=True, timeout=120)


def _gate_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "REAL-DATA TESTS NOT RUN" in line]


def test_missing_data_outside_ci_runs_synthetic_and_says_so_once(tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    r = _run(tmp_path, empty, None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 2 deselected" in r.stdout
    (line,) = _gate_lines(r.stdout)
    assert "2 tests were" in line and "STEADYSEG_SHARED_DATA" in line and "docs/data.md" in line
    assert "DAVIS 2016" in line and "COCO val2017" in line and str(empty) in line


def test_only_real_data_tests_selected_outside_ci_exits_zero(tmp_path):
    r = _run(tmp_path, tmp_path / "absent", "false", "-k", "needs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(_gate_lines(r.stdout)) == 1


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_data_under_ci_fails(tmp_path, ci):
    empty = tmp_path / "no-data"
    empty.mkdir()
    r = _run(tmp_path, empty, ci)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 passed, 2 errors" in r.stdout and "skipped" not in r.stdout and "deselected" not in r.stdout
    assert "real test data not found" in r.stdout and not _gate_lines(r.stdout)


def test_partial_data_deselects_only_what_is_missing(tmp_path):
    root = tmp_path / "data"
    (root / "davis2016" / "JPEGImages" / "480p").mkdir(parents=True)
    (root / "davis2016" / "Annotations" / "480p").mkdir(parents=True)
    r = _run(tmp_path, root, None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed, 1 deselected" in r.stdout
    (line,) = _gate_lines(r.stdout)
    assert "1 test was" in line
