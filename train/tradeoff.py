"""The accuracy–consistency trade-off of a video model along its epochs (paper §5.5, Fig. 10): ``steadyseg bench
tradeoff``.

For each checkpoint (``RUN/epoch-NNN.pt`` or any ``model.pt`` of kind ``video-model``) and each video with ground
truth, :func:`run_tradeoff` predicts every frame (:func:`steadyseg.train.predict.predict_video`), measures the masks
like ``steadyseg measure`` (one flow cache; the ground truth's median boundary count normalises ``E_cons`` and
``E_smooth``) and writes::

    <video>/<run>/<checkpoint>/   masks and bench.json (fps, inputs, cached measures); a rerun reuses them while
                                  the checkpoint file is unchanged
    results.json                  per video and checkpoint: jf (J&F mean), j_mean, f_mean, recall, iou, e_raw,
                                  e_cons, e_smooth, fps, epoch; and the mean over videos
    results.md                    one markdown table per video and one of the means
    fig10-tradeoff.png            J&F vs E_raw (mean over videos): one line per run folder in epoch order, its first
                                  checkpoint (the starting model) marked with a star
    config.yaml                   the resolved configuration

Checkpoints are grouped into runs by their folder; within a run they are ordered by epoch (``epoch-NNN.pt``,
``model.pt`` last). ``E_raw`` is the raw temporal inconsistency (lower is more stable).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

from steadyseg.errors import InputError

__all__ = ["TRADEOFF_DEFAULTS", "TRADEOFF_COLUMNS", "run_tradeoff", "checkpoint_epoch"]

TRADEOFF_DEFAULTS: dict[str, Any] = {"max_frames": None, "binary": False, "cache": None, "flow": "dis",
                                     "preset": "medium", "window": 3, "workers": None, "progress": True}
TRADEOFF_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("epoch", "Epoch", ".2f"), ("jf", "J&F", ".3f"), ("j_mean", "J", ".3f"), ("f_mean", "F", ".3f"),
    ("recall", "Recall", ".3f"), ("e_raw", "E_raw", ".4f"), ("e_cons", "E_cons", ".4f"),
    ("e_smooth", "E_smooth", ".4f"), ("fps", "fps", ".1f"))


def checkpoint_epoch(path: str | os.PathLike) -> float | None:
    """The epoch of a checkpoint: ``NNN`` of ``epoch-NNN.pt``, the ``epoch`` of the run's ``run.json`` for
    ``model.pt``, else None."""
    path = Path(path)
    m = re.fullmatch(r"epoch-(\d+)\.pt", path.name)
    if m:
        return float(m.group(1))
    if path.name == "model.pt":
        from steadyseg.files import read_json

        try:
            return float(read_json(path.parent / "run.json")["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def _runs(checkpoints: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Checkpoints grouped by folder (run), ordered by epoch; each ``{"run", "slug", "points": [...]}``."""
    from steadyseg.train.checkpoint import read_model

    groups: dict[Path, list[Path]] = {}
    for c in checkpoints:
        c = Path(c)
        if not c.is_file():
            raise InputError(c, "no such checkpoint")
        kind, _, _ = read_model(c)
        if kind != "video-model":
            raise InputError(c, f"a {kind} model; bench tradeoff compares video models (steadyseg train video-model)")
        groups.setdefault(c.parent.resolve(), []).append(c)
    runs, seen = [], set()
    for folder, files in groups.items():
        files = sorted(set(files), key=lambda f: (checkpoint_epoch(f) is None, checkpoint_epoch(f) or 0.0,
                                                  f.name == "model.pt"))
        slug = folder.name or "run"
        while slug in seen:
            slug += "-"
        seen.add(slug)
        runs.append({"run": str(folder), "slug": slug,
                     "points": [{"checkpoint": f, "name": f.stem, "epoch": checkpoint_epoch(f)} for f in files]})
    return runs


def run_tradeoff(checkpoints: Sequence[str | os.PathLike], videos: Sequence[dict[str, Any]],
                 out: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Measure accuracy and consistency of every checkpoint on every video; see the module doc for the outputs.

    Args:
        checkpoints: ``model.pt`` files of kind ``video-model`` (e.g. ``RUN/epoch-*.pt``).
        videos: ``{"frames", "gt"}`` folders (and optionally ``"name"``) per video.
        out: output folder.
        **kwargs: keys of :data:`TRADEOFF_DEFAULTS` (``max_frames``, ``binary``, ``cache`` (default
            ``out/flow-cache``), ``flow``, ``preset``, ``window``, ``workers``, ``progress``).

    Returns:
        the ``results.json`` record.
    """
    from steadyseg.datasets.masks import check_matching, open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.files import atomic_write_json, atomic_write_text, save_resolved_config
    from steadyseg.train.bench import link_first_frames, mean_record, measure_row, read_bench_json
    from steadyseg.train.predict import predict_video

    unknown = set(kwargs) - set(TRADEOFF_DEFAULTS)
    if unknown:
        raise TypeError(f"run_tradeoff: unknown arguments {sorted(unknown)}")
    cfg = {**TRADEOFF_DEFAULTS, **{k: v for k, v in kwargs.items() if v is not None}}
    if not checkpoints:
        raise InputError(None, "no checkpoints: give --checkpoints RUN/epoch-*.pt")
    if not videos:
        raise InputError(None, "no videos: give --frames DIR --gt DIR")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "the output must be a folder")
    if cfg["cache"] is None:
        cfg["cache"] = out / "flow-cache"
    runs = _runs(checkpoints)
    vids = []
    for i, v in enumerate(videos):
        v = {k: Path(v[k]) for k in ("frames", "gt")} | {"name": v.get("name") or Path(v["frames"]).name}
        if any(v["name"] == w["name"] for w in vids):
            v["name"] = f"{v['name']}-{i}"
        video = open_video(v["frames"], max_frames=cfg["max_frames"])
        try:
            check_matching(video, open_masks(v["gt"], binary=cfg["binary"], max_frames=cfg["max_frames"]))
        except InputError:
            raise
        except ValueError as exc:
            raise InputError(v["gt"], f"the ground truth does not match the frames {v['frames']}: {exc}") from None
        v["count"] = len(video)
        vids.append(v)

    results: dict[str, Any] = {"runs": [{"run": r["run"], "slug": r["slug"],
                                         "points": [{"name": p["name"], "epoch": p["epoch"],
                                                     "checkpoint": str(p["checkpoint"])} for p in r["points"]]}
                                        for r in runs], "videos": {}}
    for v in vids:
        frames = v["frames"]
        if cfg["max_frames"] is not None:
            frames = link_first_frames(frames, out / v["name"] / ".inputs", cfg["max_frames"])
        table: dict[str, dict[str, dict[str, Any]]] = {}
        for r in runs:
            for p in r["points"]:
                row_dir = out / v["name"] / r["slug"] / p["name"]
                inputs = {"frames": v["count"], "max_frames": cfg["max_frames"], "binary": cfg["binary"],
                          "frames_dir": str(v["frames"]), "checkpoint": str(p["checkpoint"].resolve()),
                          "checkpoint_mtime": p["checkpoint"].stat().st_mtime}
                rec = read_bench_json(row_dir)
                if rec is None or rec.get("inputs") != inputs:
                    if row_dir.exists():
                        import shutil

                        shutil.rmtree(row_dir)
                    pred = predict_video(p["checkpoint"], frames, row_dir, progress=bool(cfg["progress"]))
                    atomic_write_json(row_dir / "bench.json", {"inputs": inputs, "masks": str(row_dir),
                                                               "fps": pred["fps"]})
                    rec = read_bench_json(row_dir)
                values = measure_row(row_dir, v, row_dir, cfg)
                jf = (None if values["j_mean"] is None or values["f_mean"] is None
                      else (values["j_mean"] + values["f_mean"]) / 2)
                table.setdefault(r["slug"], {})[p["name"]] = {**values, "jf": jf, "fps": rec.get("fps"),
                                                              "epoch": p["epoch"]}
        results["videos"][v["name"]] = table
    results["mean"] = {r["slug"]: {p["name"]: mean_record([results["videos"][v["name"]][r["slug"]][p["name"]]
                                                           for v in vids], TRADEOFF_COLUMNS) for p in r["points"]}
                       for r in runs}
    results["config"] = {**{k: v for k, v in cfg.items()}, "cache": str(cfg["cache"]),
                         "videos": [{k: str(x) for k, x in v.items()} for v in vids],
                         "checkpoints": [str(c) for c in checkpoints]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", format_tradeoff(results))
    _plot_fig10(results, out / "fig10-tradeoff.png")
    save_resolved_config(out, results["config"])
    return results


def format_tradeoff(results: dict[str, Any]) -> str:
    """``results.md``: one table per video (rows: run / checkpoint), then the mean over videos."""
    from steadyseg.train.bench import markdown_report, markdown_table

    def table(title: str, recs: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
        rows = [([run["slug"], p["name"]], recs[run["slug"]][p["name"]]) for run in results["runs"]
                for p in run["points"]]
        return markdown_table(title, ["Run", "Checkpoint"], rows, TRADEOFF_COLUMNS)

    return markdown_report("steadyseg bench tradeoff",
                           "J&F = (J + F) / 2 (DAVIS); E_raw raw temporal inconsistency (lower is more stable); "
                           "E_cons and E_smooth use the ground truth's median boundary count; fps of prediction "
                           "(reading and writing included).", results, table)


def _plot_fig10(results: dict[str, Any], path: Path) -> None:
    """Fig. 10: mean J&F vs mean E_raw, one line per run in epoch order, the starting checkpoint starred."""
    from steadyseg.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for run in results["runs"]:
        pts = [(results["mean"][run["slug"]][p["name"]], p) for p in run["points"]]
        pts = [(m["e_raw"], m["jf"], p) for m, p in pts if m["e_raw"] is not None and m["jf"] is not None]
        if not pts:
            continue
        line, = ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], "o-", label=run["slug"])
        ax.plot([pts[0][0]], [pts[0][1]], "*", markersize=14, color=line.get_color())
        for x, y, p in pts:
            if p["epoch"] is not None:
                ax.annotate(f"{p['epoch']:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("E_raw (raw temporal inconsistency, lower is better)")
    ax.set_ylabel("J&F (accuracy)")
    ax.set_title(f"Accuracy vs inconsistency along the epochs (★ start), {len(results['videos'])} video(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
