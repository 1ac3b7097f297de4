"""The distribution installs one top-level package, ``steadyseg``, with the folders mapped as its subpackages."""

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from steadyseg.cli import SUBCOMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_wheel_has_only_the_steadyseg_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(REPO)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("steadyseg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"steadyseg"}, f"the wheel installs other top-level names: {top}"
    for sub in ("datasets", "refine", "train", "curation"):
        assert f"steadyseg/{sub}/__init__.py" in names
    assert "steadyseg/datasets/coco.py" in names
    assert not any(n.startswith("steadyseg/tests") for n in names)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "steadyseg = steadyseg.cli:main" in entry


def test_subpackages_resolve_to_the_repository_folders():
    for sub in ("datasets", "refine", "train", "curation"):
        module = importlib.import_module(f"steadyseg.{sub}")
        assert Path(module.__file__).resolve().parent == REPO / sub


def test_every_subcommand_is_registered_and_has_help(capsys):
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert set(SUBCOMMANDS) <= set(choices)
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
    assert "measure" in capsys.readouterr().out


def test_every_subcommand_module_follows_the_cli_convention():
    """Each subcommand lives in a module whose name ends in ``cli`` (``<thing>_cli`` or ``<stage>.cli``) and that
    exposes ``add_arguments(parser)`` and ``main(args)``; the library modules hold the logic."""
    for name, (module_name, _help) in SUBCOMMANDS.items():
        assert module_name.rsplit(".", 1)[-1].endswith("cli"), f"{name}: module {module_name} does not end in 'cli'"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # an optional extra (fiftyone, dask) that is not installed
            assert exc.name != module_name, f"{name}: no module {module_name}"
            continue
        for func in ("add_arguments", "main"):
            assert callable(getattr(module, func, None)), f"{module_name} has no {func}()"


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
