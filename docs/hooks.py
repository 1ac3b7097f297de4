"""MkDocs hooks of the steadyseg site (mkdocs.yml ``hooks:``).

- ``on_startup`` / ``on_config``: assemble ``build/docs-src/steadyseg`` (links to the source files, following the ``package-dir`` mapping of
  pyproject.toml: ``steadyseg/`` plus ``datasets/``, ``refine/``, ``train/``, ``curation/`` as subpackages) so that
  mkdocstrings reads the installed package layout from the source, without importing it.
- ``on_files``: add the generated CLI reference ``cli.md`` (docs/gen_cli.py), rendered from the argparse parsers
  on every build.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[1]
SOURCE_TREE = REPO / "build" / "docs-src"


def package_dirs(pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """``{"steadyseg.datasets": "datasets", ...}`` from the ``package-dir`` table of pyproject.toml."""
    text = pyproject.read_text(encoding="utf-8")
    match = re.search(r"^package-dir\s*=\s*\{(.*?)\}", text, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"{pyproject}: no package-dir table in [tool.setuptools]")
    return dict(re.findall(r'"([\w.]+)"\s*=\s*"([^"]+)"', match.group(1)))


def _mirror(src: Path, dst: Path) -> None:
    """Real folders, linked files: griffe does not descend into linked folders."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            _mirror(entry, dst / entry.name)
        elif entry.suffix in (".py", ".pyi"):
            (dst / entry.name).symlink_to(entry)


def build_source_tree(out: Path = SOURCE_TREE) -> Path:
    """Mirror the package folders into ``out/steadyseg`` the way setuptools installs them; returns ``out``."""
    if out.exists():
        shutil.rmtree(out)
    mapping = package_dirs()
    top = out / "steadyseg"
    _mirror(REPO / mapping.get("steadyseg", "steadyseg"), top)
    for name, folder in sorted(mapping.items()):
        parts = name.split(".")
        if len(parts) > 1 and not (top / Path(*parts[1:])).exists():
            _mirror(REPO / folder, top / Path(*parts[1:]))
    return out


def _gen_cli():
    spec = importlib.util.spec_from_file_location("steadyseg_docs_gen_cli", Path(__file__).with_name("gen_cli.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_startup(command, dirty):
    # before any plugin reads its configuration: mkdocstrings drops a search path that does not exist yet, so a
    # first build in a fresh clone would not find the subpackages if the tree were made later (in on_config)
    build_source_tree()


def on_config(config):
    build_source_tree()  # again per build: `mkdocs serve` rebuilds after source edits
    return config


def on_files(files, config):
    files.append(File.generated(config, "cli.md", content=_gen_cli().render()))
    return files
