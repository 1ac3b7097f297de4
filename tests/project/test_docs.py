"""The documentation site builds with --strict (broken links and unresolved API identifiers fail), and its
generated parts are complete and up to date."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_site_builds_strict(tmp_path):
    # as in a fresh clone: the generated source mirror (build/docs-src) does not exist before the first build
    import shutil

    shutil.rmtree(REPO / "build" / "docs-src", ignore_errors=True)
    r = _mkdocs(REPO / "mkdocs.yml", tmp_path / "site")
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout}\n{r.stderr}"
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "core" / "index.html").is_file()


def test_strict_build_fails_on_broken_link_and_unknown_identifier(tmp_path):
    """The gate itself: the same theme and mkdocstrings settings reject a bad link and a bad identifier."""
    hooks = _load(REPO / "docs" / "hooks.py", "steadyseg_docs_hooks")
    src = hooks.build_source_tree(tmp_path / "src")
    config = (REPO / "mkdocs.yml").read_text()
    config = re.sub(r"(?ms)^hooks:.*?^(?=\S)", "", config)
    config = re.sub(r"(?ms)^nav:.*", "", config)
    config = config.replace("paths: [build/docs-src]", f"paths: [{src}]")
    config = re.sub(r"(?m)^docs_dir: docs$", f"docs_dir: {tmp_path / 'docs'}", config)
    (tmp_path / "docs").mkdir()
    cfg = tmp_path / "mkdocs.yml"
    cfg.write_text(config)
    (tmp_path / "docs" / "index.md").write_text("# ok\n\n::: steadyseg.labels\n")
    assert _mkdocs(cfg, tmp_path / "site").returncode == 0
    (tmp_path / "docs" / "index.md").write_text("# bad link\n\nsee [nowhere](missing.md)\n")
    r = _mkdocs(cfg, tmp_path / "site")
    assert r.returncode != 0 and "missing.md" in r.stdout + r.stderr
    (tmp_path / "docs" / "index.md").write_text("# bad identifier\n\n::: steadyseg.no_such_module\n")
    r = _mkdocs(cfg, tmp_path / "site")
    assert r.returncode != 0 and "steadyseg.no_such_module" in r.stdout + r.stderr


def test_cli_reference_lists_every_subcommand():
    from steadyseg.cli import SUBCOMMANDS

    page = _load(REPO / "docs" / "gen_cli.py", "steadyseg_docs_gen_cli").render()
    for name in SUBCOMMANDS:
        assert f"\n## steadyseg {name}\n" in page, name
    assert "### steadyseg study make-grid" in page and "### steadyseg postprocess wgf" in page


def test_benchmarks_page_is_up_to_date():
    make_page = _load(REPO / "benchmarks" / "make_page.py", "steadyseg_make_page")
    current = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert current == make_page.render(), "docs/benchmarks.md is stale: run python benchmarks/make_page.py render"


def test_every_benchmark_record_says_where_it_comes_from():
    make_page = _load(REPO / "benchmarks" / "make_page.py", "steadyseg_make_page")
    for rec in make_page.load_records():
        assert rec["source"] == "run" or rec["source"].startswith("transcribed from"), rec["benchmark"]
        if rec["source"] == "run":
            assert rec["machine"]["cpu_model"] and rec["machine"]["cores"] and rec["load_average"]["before"]


# design notes and machine paths that live outside the repository; spelled in pieces so that this list is not
# itself a reference (a plain `git grep` for them must find nothing in the tree)
OUTSIDE_REFERENCES = tuple(a + b for a, b in [("ARCHITECTURE", ".md"), ("shared/", "design"), ("ENVIRONMENT", ".md"),
                                              ("FINDINGS", ".md"), ("CASCADEPSP", ".md"), ("/work", "/")])


def test_repository_references_nothing_outside_it():
    """No tracked file (code, tests, docs, manifests) points at design notes or absolute paths outside the repo."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    me = Path(__file__).resolve()
    suffixes = {".py", ".md", ".yml", ".yaml", ".toml", ".txt", ".cfg", ".sh", ""}
    checked = 0
    for name in tracked:
        path = REPO / name
        if path.suffix not in suffixes or not path.is_file() or path.resolve() == me:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        checked += 1
        for bad in OUTSIDE_REFERENCES:
            assert bad not in text, f"{name} refers to {bad}, which is not in the repository"
    assert checked > 50, f"only {checked} files checked: is this a git checkout?"


def _code_blocks(languages: set[str]):
    """(path, code) of every fenced block in README.md and docs/*.md whose language is in ``languages``."""
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for match in re.finditer(r"(?ms)^```(\w*)\n(.*?)^```", path.read_text(encoding="utf-8")):
            if match.group(1) in languages:
                yield path.relative_to(REPO), match.group(2)


def test_documented_commands_and_flags_exist():
    """Every `steadyseg <command> [sub] --flag` in a shell block of the docs is accepted by the current parser."""
    gen_cli = _load(REPO / "docs" / "gen_cli.py", "steadyseg_docs_gen_cli")
    from steadyseg.cli import build_parser

    commands = gen_cli._subparsers(build_parser())
    checked = 0
    for path, code in _code_blocks({"", "bash", "sh"}):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            match = re.match(r"\s*(?:[A-Z_]+=\S+\s+)*steadyseg\s+([a-z][\w-]*)(.*)", line)  # VAR=x steadyseg ...
            if match is None:
                continue
            name, rest = match.groups()
            assert name in commands, f"{path}: unknown command 'steadyseg {name}' in: {line.strip()}"
            parser = commands[name]
            subs = gen_cli._subparsers(parser)
            sub = rest.split()[0] if rest.split() else ""
            if sub in subs:
                parser = subs[sub]
            elif subs and not sub.startswith("-") and not sub.startswith('"'):
                # a command with sub-commands and options of its own (steadyseg bench / bench tradeoff)
                raise AssertionError(f"{path}: unknown command 'steadyseg {name} {sub}' in: {line.strip()}")
            known = {o for action in parser._actions for o in action.option_strings}  # noqa: SLF001
            for flag in re.findall(r"(?:^|[\s\[])(--[a-z][\w-]*)", rest):
                assert flag in known, f"{path}: 'steadyseg {name}' has no flag {flag}: {line.strip()}"
            checked += 1
    assert checked >= 20


def test_documented_python_imports_exist():
    """Every `from steadyseg... import ...` / `import steadyseg...` in a Python block of the docs resolves."""
    import importlib

    checked = 0
    for path, code in _code_blocks({"python"}):
        for line in code.splitlines():
            line = line.split("#")[0].strip()
            match = re.match(r"from (steadyseg[\w.]*) import (.+)", line) or re.match(r"import (steadyseg[\w.]*)$", line)
            if match is None:
                continue
            module = importlib.import_module(match.group(1))
            names = [n.split(" as ")[0].strip(" ()") for n in match.group(2).split(",")] if match.lastindex == 2 else []
            for name in filter(None, names):
                if not hasattr(module, name):
                    importlib.import_module(f"{match.group(1)}.{name}")  # a submodule; raises if absent
            checked += 1
    assert checked >= 10
