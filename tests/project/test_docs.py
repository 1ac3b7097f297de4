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


def test_docs_reference_nothing_outside_the_repository():
    texts = {p: p.read_text(encoding="utf-8") for p in [REPO / "README.md", REPO / "mkdocs.yml",
                                                         *sorted((REPO / "docs").rglob("*.md")),
                                                         *sorted((REPO / "docs").rglob("*.py"))]}
    for path, text in texts.items():
        for bad in ("ARCHITECTURE.md", "shared/design", "ENVIRONMENT.md", "FINDINGS.md", "CASCADEPSP.md"):
            assert bad not in text, f"{path.relative_to(REPO)} refers to {bad}, which is not in the repository"
