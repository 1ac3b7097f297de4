"""Benchmark records (benchmarks/results/*.json) and the page made from them (docs/benchmarks.md).

    # run a benchmark script, wrap its --json output with date, machine and load average, store the record
    python benchmarks/make_page.py record [--notes TEXT] bench_flow -- python benchmarks/bench_flow.py --repeats 3
    # render docs/benchmarks.md from every record (tests/project/test_docs.py checks it is up to date)
    python benchmarks/make_page.py render

A record is one JSON file: ``benchmark`` (script name), ``title``, ``date`` (UTC), ``command``, ``machine``
(CPU model, cores, torch / OpenCV / numpy / Python versions), ``load_average`` (1/5/15 min, before and after the
run), ``source`` ("run" or where a transcribed number comes from), optional ``notes``, and either ``output`` (the
script's own JSON) or ``table`` (``columns`` + ``rows``, for transcribed numbers). Nothing in a record is edited
by hand after it was written, except ``notes``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "docs" / "benchmarks.md"
NOTES = RESULTS / "NOTES.md"

TITLES = {
    "bench_flow": "Optical flow and the flow cache (`bench_flow.py`)",
    "bench_guided_filter": "3D weighted guided filter (`bench_guided_filter.py`)",
    "bench_measure": "The measure: speed and memory (`bench_measure.py`)",
    "bench_refine_coco": "`refine-coco` throughput (`bench_refine_coco.py`)",
    "bench_cascadepsp": "CascadePSP on CPU (`bench_cascadepsp.py`)",
    "bench_curation_ingest": "Curation ingest (`bench_curation_ingest.py`)",
    "bench_video_models": "Decoder and video-model speed (`bench_video_models.py`)",
}


# ------------------------------------------------------------------------------------------------------ record

def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """CPU model, core count and library versions (read without importing torch or cv2)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    opencv = next((v for v in map(_version, ("opencv-contrib-python-headless", "opencv-python-headless",
                                               "opencv-python")) if v), None)
    return {"cpu_model": cpu, "cores": os.cpu_count(), "torch": _version("torch"), "opencv": opencv,
            "numpy": _version("numpy"), "python": platform.python_version(), "system": platform.platform()}


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def record(name: str, command: list[str], *, notes: str | None = None, out_dir: Path = RESULTS) -> Path:
    """Run ``command + ["--json", TMP]`` from the repository root and store the wrapped record; returns its path.

    A command that starts with ``python`` / ``python3`` runs with this interpreter (``sys.executable``), so a
    record made from a virtual environment's Python measures that environment even when it is not activated."""
    run = [sys.executable if i == 0 and c in ("python", "python3") else c for i, c in enumerate(command)]
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / "out.json"
        before, start = _load(), _dt.datetime.now(_dt.timezone.utc)
        subprocess.run([*run, "--json", str(out_json)], cwd=REPO, check=True)
        after = _load()
        output = json.loads(out_json.read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    shown = ["python" if i == 0 and Path(c).name.startswith("python") else c for i, c in enumerate(command)]
    rec = {"benchmark": name, "title": TITLES.get(name, name), "source": "run",
           "date": start.isoformat(timespec="seconds").replace("+00:00", "Z"),
           "command": shlex.join(shown) + " --json PATH", "machine": machine(),
           "load_average": {"before": before, "after": after}, "git_commit": commit.stdout.strip() or None,
           "notes": notes, "output": output}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{start.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(rec, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------------ render

def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.1f}"
    return str(v).replace("|", "\\|")


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return out


def _rows_flow(output: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    cols = ["what", "ms / pair", "mean EPE vs DIS medium (px)", "EPE vs exact flow, synthetic (px)",
            "max abs error (px)", "MB / pair"]
    rows = [[r["what"], r["ms_per_pair"], r.get("mean_epe_vs_dis_medium_px"), r.get("synthetic_epe_vs_exact_px"),
             r.get("max_abs_error_px"), r["bytes_per_pair"] / 1e6 if r.get("bytes_per_pair") else None]
            for r in output["results"]]
    return cols, rows


def _rows_guided_filter(output: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    cols = ["guide", "weighted", "r", "rt", "ms / frame (wall, fastest run)", "CPU ms / frame", "fps / class"]
    rows = [["colour" if r["colour"] else "gray", r["weighted"], r["radius"], r["temporal_radius"],
             r["ms_per_frame"], r["cpu_ms_per_frame"], r["fps_per_class"]] for r in output["results"]]
    return cols, rows


def _rows_generic(output: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    results = output.get("results", [])
    cols: list[str] = []
    for r in results:
        cols += [k for k in r if k not in cols]
    return cols, [[r.get(c) for c in cols] for r in results]


RENDERERS = {"bench_flow": _rows_flow, "bench_guided_filter": _rows_guided_filter}


def _machine_line(m: dict[str, Any]) -> str:
    parts = [m.get("cpu_model") or "CPU model not recorded", f"{m['cores']} cores" if m.get("cores") else None]
    parts += [f"{k} {m[k]}" for k in ("torch", "opencv", "numpy", "python") if m.get(k)]
    return ", ".join(p for p in parts if p)


def _section(rec: dict[str, Any]) -> list[str]:
    lines = [f"### {rec['date'][:10]} — {'measured here' if rec['source'] == 'run' else 'transcribed'}", ""]
    lines.append(f"- **command:** `{rec['command']}`")
    lines.append(f"- **date:** {rec['date']}")
    lines.append(f"- **machine:** {_machine_line(rec['machine'])}")
    load = rec.get("load_average")
    if load:
        lines.append(f"- **load average (1/5/15 min):** before {load.get('before')}, after {load.get('after')}")
    if rec["source"] != "run":
        lines.append(f"- **source:** {rec['source']}")
    if rec.get("git_commit"):
        lines.append(f"- **commit:** `{rec['git_commit']}`")
    if rec.get("notes"):
        lines.append(f"- **notes:** {rec['notes']}")
    lines.append("")
    if "table" in rec:
        cols, rows = rec["table"]["columns"], rec["table"]["rows"]
    else:
        cols, rows = RENDERERS.get(rec["benchmark"], _rows_generic)(rec["output"])
    return lines + _table(cols, rows) + [""]


def load_records(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Every record, grouped by benchmark (order of TITLES, then name) and newest first within a benchmark."""
    recs = []
    for path in sorted(results.glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        missing = {"benchmark", "date", "command", "machine", "source"} - rec.keys()
        if missing or not ("output" in rec or "table" in rec):
            raise ValueError(f"{path}: not a benchmark record (missing {sorted(missing) or ['output or table']})")
        recs.append(rec)
    order = {name: i for i, name in enumerate(TITLES)}
    recs.sort(key=lambda r: r["date"], reverse=True)
    recs.sort(key=lambda r: (order.get(r["benchmark"], len(order)), r["benchmark"]))
    return recs


def render(results: Path = RESULTS) -> str:
    """docs/benchmarks.md as a string."""
    lines = [
        "# Benchmarks",
        "",
        "<!-- generated by `python benchmarks/make_page.py render` from benchmarks/results/*.json: do not edit -->",
        "",
        "Every number on this page comes from a JSON record in `benchmarks/results/`, with the command that produced",
        "it, the date and the machine. Records marked *measured here* were produced by running the command through",
        "`python benchmarks/make_page.py record NAME -- COMMAND`; records marked *transcribed* copy a measurement",
        "that was made earlier and written down with its command, and say where it comes from.",
        "",
        "!!! warning \"A shared 2-core machine\"",
        "    The development machine has 2 cores that several jobs share. Wall-clock times depend on that load, so",
        "    each record keeps the load average before and after the run; a load above 2 means other work competed",
        "    for the cores and the times are pessimistic. CPU times, where a benchmark reports them, are steadier.",
        "",
        "The stage pages hold further measurements made while other jobs loaded the machine (quality tables with",
        "their commands, and speed numbers under load): [refine](refine.md), [datasets](datasets.md),",
        "[measure](measure.md), [post-process](postprocess.md), [curate](curate.md), [study](study.md).",
        "",
    ]
    current = None
    for rec in load_records(results):
        if rec["benchmark"] != current:
            current = rec["benchmark"]
            lines += [f"## {rec.get('title') or TITLES.get(current, current)}", ""]
        lines += _section(rec)
    if NOTES.exists() and results == RESULTS:
        lines += [NOTES.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="action", required=True)
    rec = sub.add_parser("record", help="run a benchmark command (it must accept --json PATH) and store a record")
    rec.add_argument("name", help="benchmark name, e.g. bench_flow")
    rec.add_argument("--notes", default=None)
    rec.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    ren = sub.add_parser("render", help="write docs/benchmarks.md from the records")
    ren.add_argument("--out", type=Path, default=PAGE)
    ren.add_argument("--check", action="store_true", help="exit 1 when the page differs from the records")
    args = ap.parse_args(argv)
    if args.action == "record":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            ap.error("record: give the command after --")
        print(f"wrote {record(args.name, command, notes=args.notes)}")
        return 0
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python benchmarks/make_page.py render", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
