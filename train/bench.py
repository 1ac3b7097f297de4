"""The paper's comparisons (Table 1, Fig. 7, Fig. 9) on videos with ground truth: the library of ``steadyseg bench``.

For each video (frames, ground truth, the teacher's masks) and each method row, :func:`run_bench` produces the
row's masks, measures them with :func:`steadyseg.measure_video.measure_video` (one flow cache for all rows; the
ground truth's median boundary count normalises ``E_cons`` and ``E_smooth``, so every row of a video shares it) and
writes the tables and plots. Method specs (:func:`parse_method`)::

    teacher                         the teacher's masks as given ("Naive"); always measured, first row
    gauss:SIGMA                     temporal Gaussian of the teacher, σ in frames (steadyseg postprocess gauss)
    wgf2d                           weighted guided filter per frame (temporal_radius 0)
    wgf3d                           3D weighted guided filter (steadyseg postprocess wgf defaults)
    wgf3d:KEY=VALUE[,KEY=VALUE]     the same with other parameters, e.g. wgf3d:strength=light or
                                    wgf3d:eps=0.001 (names of steadyseg.refine.postprocess WGF_DEFAULTS)
    decoder:NAME=RUN/model.pt       a trained decoder or TI model applied to the teacher (steadyseg predict)
    decoder+wgf3d:NAME=RUN/model.pt that decoder's masks filtered by the 3D WGF

Outputs under ``out``::

    <video>/<row>/          the row's masks (teacher row: none) and bench.json (fps, inputs, cached measures);
                            a rerun reuses a row whose bench.json records the same inputs (for the
                            filter rows these include the filter's resolved parameters, so a changed
                            default is recomputed, never reused)
    results.json            per video and row: recall, iou, j_mean, f_mean, e_smooth, e_raw, e_cons,
                            e_raw_change (relative change of E_raw vs the teacher), fps; and the mean over videos
    results.md              one markdown table per video and one of the means
    fig9-recall-vs-eraw.png recall vs E_raw: the Gaussian front as a line, the other rows as labelled points
    fig9-iou-vs-eraw.png    the same with IoU (mean J) instead of recall
    fig7-inputs.png         with decoders of ≥ 2 different N: N vs recall / E_cons / E_smooth
    config.yaml             the resolved configuration
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from steadyseg.errors import InputError

__all__ = ["Row", "parse_method", "load_bench_manifest", "run_bench", "BENCH_DEFAULTS", "DEFAULT_METHODS",
           "COLUMNS", "format_tables", "markdown_report", "markdown_table", "mean_record", "measure_row", "read_bench_json",
           "link_first_frames"]

DEFAULT_METHODS: tuple[str, ...] = ("teacher", "gauss:0.5", "gauss:1", "gauss:2", "gauss:3", "wgf2d", "wgf3d")
BENCH_DEFAULTS: dict[str, Any] = {"methods": DEFAULT_METHODS, "max_frames": None, "binary": False, "cache": None,
                                  "flow": "dis", "preset": "medium", "window": 3, "workers": None, "progress": True}
# (key in results.json, column title of results.md, format)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("recall", "Recall", ".3f"), ("iou", "IoU", ".3f"), ("j_mean", "J", ".3f"), ("f_mean", "F", ".3f"),
    ("e_smooth", "E_smooth", ".4f"), ("e_raw", "E_raw", ".4f"), ("e_cons", "E_cons", ".4f"),
    ("e_raw_change", "ΔE_raw", "+.1%"), ("fps", "fps", ".1f"))
_MANIFEST_KEYS = {"name", "description", "videos", "methods", "options", "out"}
_VIDEO_KEYS = {"name", "frames", "gt", "teacher"}
_OPTION_KEYS = set(BENCH_DEFAULTS) - {"methods", "progress"}


@dataclass(frozen=True)
class Row:
    """One method row: ``kind`` in teacher / gauss / wgf2d / wgf3d / decoder / decoder+wgf3d."""

    spec: str
    kind: str
    label: str
    slug: str
    sigma: float | None = None
    checkpoint: Path | None = None
    name: str | None = None  # decoder rows: NAME of the spec
    params: tuple[tuple[str, Any], ...] = ()  # wgf rows: parameters given in the spec

    def postprocess(self) -> tuple[str, dict[str, Any]] | None:
        """``(method, resolved parameters)`` of :func:`~steadyseg.refine.postprocess.video_filter.postprocess_video`
        for the filter rows (gauss, wgf2d, wgf3d, decoder+wgf3d), else None."""
        from steadyseg.refine.postprocess.video_filter import resolve_params

        if self.kind == "gauss":
            return "gauss", resolve_params("gauss", {"sigma": self.sigma})
        if self.kind in ("wgf2d", "wgf3d", "decoder+wgf3d"):
            given = {**dict(self.params), **({"temporal_radius": 0} if self.kind == "wgf2d" else {})}
            return "wgf", resolve_params("wgf", given)
        return None


def parse_method(spec: str, *, where: str | os.PathLike | None = None) -> Row:
    """A :class:`Row` of a method spec (see the module doc); ``InputError`` naming ``where`` (or the spec) if bad."""
    s = str(spec).strip()
    if s in ("teacher", "wgf2d", "wgf3d"):
        label = {"teacher": "Naive (teacher)", "wgf2d": "2D WGF", "wgf3d": "3D WGF"}[s]
        return Row(s, s, label, s)
    m = re.fullmatch(r"(wgf2d|wgf3d):(.+)", s)
    if m:
        from steadyseg.cli import parse_key_values
        from steadyseg.refine.postprocess.video_filter import resolve_params

        kind, text = m.groups()
        try:
            params = parse_key_values(text.split(","), flag=f"method {kind}")
            resolve_params("wgf", params)  # unknown names / strengths fail here, naming them
        except ValueError as exc:
            raise InputError(where, f"method {s!r}: {exc}") from None
        if kind == "wgf2d" and "temporal_radius" in params:
            raise InputError(where, f"method {s!r}: wgf2d has temporal_radius 0; use wgf3d")
        text = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        label = f"{'2D' if kind == 'wgf2d' else '3D'} WGF ({text.replace(',', ', ')})"
        slug = f"{kind}-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
        return Row(s, kind, label, slug, params=tuple(params.items()))
    m = re.fullmatch(r"gauss:([0-9]*\.?[0-9]+)", s)
    if m:
        sigma = float(m.group(1))
        if sigma <= 0:
            raise InputError(where, f"method {s!r}: σ must be > 0")
        return Row(s, "gauss", f"Gaussian σ={sigma:g}", f"gauss-{sigma:g}", sigma=sigma)
    m = re.fullmatch(r"(decoder|decoder\+wgf3d):([A-Za-z0-9_.-]+)=(.+)", s)
    if m:
        kind, name, ckpt = m.groups()
        label = name if kind == "decoder" else f"{name} + 3D WGF"
        return Row(s, kind, label, f"{kind.replace('+', '-')}-{name}", checkpoint=Path(ckpt), name=name)
    raise InputError(where, f"unknown method {s!r}; expected teacher, gauss:SIGMA, wgf2d, wgf3d, "
                            "wgf3d:KEY=VALUE[,KEY=VALUE], decoder:NAME=RUN/model.pt or "
                            "decoder+wgf3d:NAME=RUN/model.pt")


def load_bench_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a bench manifest; paths (``${VAR:-default}`` expanded) resolved relative to its folder.

    Schema::

        name: TEXT                      # optional
        description: TEXT               # optional
        videos:                         # required, ≥ 1
          - {name: TEXT, frames: DIR, gt: DIR, teacher: DIR}   # name optional (default: the frames folder's name)
        methods: [SPEC, ...]            # optional (default DEFAULT_METHODS); see parse_method
        options: {max_frames: N, binary: BOOL, cache: DIR, flow: dis, preset: medium, window: K, workers: N}
        out: DIR                        # optional (--out overrides)

    Returns:
        ``{"videos": [{"name", "frames", "gt", "teacher"}], "methods": [...], "options": {...}, "out": Path|None}``.

    Raises:
        InputError naming the file: YAML errors, unknown or missing keys, wrong types, unknown methods, unset
        environment variables without a default.
    """
    import yaml

    from steadyseg.manifest import ManifestError, expand_env  # the one ${VAR:-default} rule of every manifest

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise InputError(path, "expected a mapping with keys videos, methods, options")

    def unknown(keys, allowed, where):
        extra = sorted(set(keys) - allowed)
        if extra:
            raise InputError(path, f"{where}: unknown key(s) {extra}; expected some of {sorted(allowed)}")

    def resolve(value, where):
        if not isinstance(value, str) or not value:
            raise InputError(path, f"{where}: expected a path, got {value!r}")
        try:
            value = expand_env(value, where=where)
        except ManifestError as exc:
            raise InputError(path, str(exc)) from None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (path.parent / p).resolve()

    unknown(doc, _MANIFEST_KEYS, "top level")
    videos = doc.get("videos")
    if not isinstance(videos, list) or not videos:
        raise InputError(path, "videos: expected a non-empty list of {frames, gt, teacher}")
    out_videos = []
    for i, v in enumerate(videos):
        where = f"videos[{i}]"
        if not isinstance(v, dict):
            raise InputError(path, f"{where}: expected a mapping with frames, gt, teacher")
        unknown(v, _VIDEO_KEYS, where)
        missing = sorted({"frames", "gt", "teacher"} - set(v))
        if missing:
            raise InputError(path, f"{where}: missing key(s) {missing}")
        rec = {k: resolve(v[k], f"{where}.{k}") for k in ("frames", "gt", "teacher")}
        rec["name"] = str(v.get("name") or rec["frames"].name)
        out_videos.append(rec)
    methods = doc.get("methods", list(DEFAULT_METHODS))
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise InputError(path, "methods: expected a list of method specs")
    rows = [parse_method(m, where=path) for m in methods]
    methods = [r.spec if r.checkpoint is None else f"{r.kind}:{r.name}={resolve(str(r.checkpoint), 'methods')}"
               for r in rows]
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise InputError(path, "options: expected a mapping")
    unknown(options, _OPTION_KEYS, "options")
    options = dict(options)
    if options.get("cache") is not None:
        options["cache"] = resolve(options["cache"], "options.cache")
    out = resolve(doc["out"], "out") if doc.get("out") is not None else None
    return {"videos": out_videos, "methods": methods, "options": options, "out": out}


# ----------------------------------------------------------------------------------------------------------------
# Producing and measuring the rows
# ----------------------------------------------------------------------------------------------------------------
def read_bench_json(row_dir: Path) -> dict[str, Any] | None:
    """``row_dir/bench.json`` (a row's inputs, masks, fps and cached measures), or None when absent or unreadable."""
    import json

    try:
        return json.loads((Path(row_dir) / "bench.json").read_text())
    except (OSError, ValueError):
        return None


def _video_length(frames: Path, gt: Path, teacher: Path, *, max_frames: int | None, binary: bool) -> int:
    """Frame count after ``max_frames``; ``InputError`` naming the folders when the counts or sizes disagree."""
    from steadyseg.datasets.masks import check_matching, open_masks
    from steadyseg.datasets.video import open_video

    video = open_video(frames, max_frames=max_frames)
    for what, folder in (("ground truth", gt), ("teacher", teacher)):
        masks = open_masks(folder, binary=binary, max_frames=max_frames)
        try:
            check_matching(video, masks)
        except InputError:
            raise
        except ValueError as exc:
            raise InputError(folder, f"the {what} does not match the frames {frames}: {exc}") from None
    return len(video)


def _link_files(files: list[str | None], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = folder / Path(f).name
        if not link.exists():
            link.symlink_to(Path(f).resolve())
    return folder


def link_first_frames(frames: Path, dst: Path, max_frames: int) -> Path:
    """``dst/frames``: a folder of links to the first ``max_frames`` frames (a model then predicts only those)."""
    from steadyseg.datasets.video import open_video

    video = open_video(frames, max_frames=max_frames)
    files = [video.frame_path(i) for i in range(len(video))]
    if None in files:  # a video file: nothing to link
        raise InputError(frames, "max_frames with a model row needs a folder of per-frame files")
    return _link_files(files, dst / "frames")


def _truncated_inputs(frames: Path, teacher: Path, dst: Path, max_frames: int) -> tuple[Path, Path]:
    """Folders of links to the first ``max_frames`` frames and teacher masks (a model predicts only those)."""
    from steadyseg.datasets.masks import open_masks

    masks = open_masks(teacher, max_frames=max_frames)
    files = [masks.mask_path(i) for i in range(len(masks))]
    if None in files:  # one (T, C, H, W) array: nothing to link
        raise InputError(teacher, "max_frames with a decoder row needs folders of per-frame files")
    return link_first_frames(frames, dst, max_frames), _link_files(files, dst / "teacher")


def _produce(row: Row, video: dict[str, Any], row_dir: Path, inputs: dict[str, Any], cfg: dict[str, Any],
             rows_done: dict[str, dict[str, Any]]) -> tuple[Path, float | None]:
    """Write the row's masks into ``row_dir`` (or reuse them); returns (masks folder, fps of the method)."""
    from steadyseg.files import atomic_write_json
    from steadyseg.refine.postprocess.video_filter import postprocess_video

    rec = read_bench_json(row_dir)
    if rec is not None and rec.get("inputs") == inputs:
        return Path(rec["masks"]), rec.get("fps")
    if row_dir.exists():  # stale outputs of other inputs
        import shutil

        shutil.rmtree(row_dir)
    progress = bool(cfg["progress"])
    if row.kind == "teacher":
        masks, fps = video["teacher"], None
    elif row.kind in ("gauss", "wgf2d", "wgf3d"):
        method, params = row.postprocess()
        t0 = time.perf_counter()
        postprocess_video(video["teacher"], row_dir, method=method, frames_path=video["frames"], binary=cfg["binary"],
                          max_frames=cfg["max_frames"], progress=progress, **params)
        masks, fps = row_dir, inputs["frames"] / (time.perf_counter() - t0)
    elif row.kind == "decoder":
        from steadyseg.train.predict import predict_video

        frames, teacher = video["frames"], video["teacher"]
        if cfg["max_frames"] is not None:
            frames, teacher = _truncated_inputs(frames, teacher, row_dir.parent / ".inputs", cfg["max_frames"])
        pred = predict_video(row.checkpoint, frames, row_dir, teacher=teacher, progress=progress)
        masks, fps = row_dir, pred["fps"]
    else:  # decoder+wgf3d: the decoder row's masks, filtered
        base = rows_done.get(row.name)
        if base is None:
            raise InputError(row.checkpoint, f"method {row.spec!r} needs its decoder row 'decoder:{row.name}=...' "
                                             "before it")
        t0 = time.perf_counter()
        method, params = row.postprocess()
        postprocess_video(base["masks"], row_dir, method=method, frames_path=video["frames"], binary=cfg["binary"],
                          max_frames=cfg["max_frames"], progress=progress, **params)
        wall = time.perf_counter() - t0
        fps = 1.0 / (1.0 / base["fps"] + wall / inputs["frames"]) if base["fps"] else None
        masks = row_dir
    atomic_write_json(row_dir / "bench.json", {"inputs": inputs, "masks": str(masks), "fps": fps})
    return Path(masks), fps


#: version of the accuracy columns cached in bench.json; 2: F with the official DAVIS boundary conventions
#: (2026-12-01). Cached measures of another version get their J, F, recall and IoU recomputed (cheap: no flow).
ACCURACY_VERSION = 2


def _accuracy(masks: Path, video: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    from steadyseg.accuracy import davis_scores
    from steadyseg.datasets.masks import open_masks

    pred = open_masks(masks, binary=cfg["binary"], max_frames=cfg["max_frames"])
    gt = open_masks(video["gt"], binary=cfg["binary"], max_frames=cfg["max_frames"])
    acc = davis_scores(pred, gt, binary=cfg["binary"])
    return {"recall": acc["J_recall"], "iou": acc["mean_iou"], "j_mean": acc["J_mean"], "f_mean": acc["F_mean"]}


def measure_row(masks: Path, video: dict[str, Any], row_dir: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """The measures of the masks of one row of one video (``video["frames"]``, ``video["gt"]``), cached in
    ``row_dir/bench.json`` under the measure settings of ``cfg`` (``max_frames``, ``binary``, ``flow``, ``preset``,
    ``window``; also ``cache``, ``workers``, ``progress``)."""
    from steadyseg.files import atomic_write_json
    from steadyseg.measure_video import measure_video

    settings = {k: cfg[k] for k in ("max_frames", "binary", "flow", "preset", "window")}
    rec = read_bench_json(row_dir) or {}
    cached = rec.get("measures")
    if cached is not None and cached.get("settings") == settings:
        values = cached["values"]
        if values.get("accuracy_version") != ACCURACY_VERSION:
            values = {**values, **_accuracy(masks, video, cfg), "accuracy_version": ACCURACY_VERSION}
            atomic_write_json(row_dir / "bench.json", {**rec, "measures": {"settings": settings, "values": values}})
        return values
    res = measure_video(frames=video["frames"], masks=masks, gt=video["gt"], binary=cfg["binary"], flow=cfg["flow"],
                        preset=cfg["preset"], window=cfg["window"], cache=cfg["cache"], workers=cfg["workers"],
                        max_frames=cfg["max_frames"], progress=bool(cfg["progress"]))
    values = {"recall": res["j_recall"], "iou": res["iou"], "j_mean": res["j_mean"], "f_mean": res["f_mean"],
              "e_smooth": res["smoothness"], "e_raw": res["inconsistency_raw"], "e_cons": res["inconsistency"],
              "normalizer": res["normalizer"], "frames": res["num_frames"], "accuracy_version": ACCURACY_VERSION}
    atomic_write_json(row_dir / "bench.json", {**rec, "measures": {"settings": settings, "values": values}})
    return values


def _model_inputs(checkpoint: Path) -> int | None:
    """N (``inputs``) of a decoder checkpoint; 1 for TI models; None when unknown."""
    from steadyseg.train.checkpoint import read_model

    kind, config, _ = read_model(checkpoint)
    return 1 if kind == "ti" else config.get("inputs")


def run_bench(videos: Sequence[dict[str, Any]], out: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Run the comparison; see the module doc for the rows and outputs.

    Args:
        videos: ``{"frames", "gt", "teacher"}`` folders (and optionally ``"name"``) per video.
        out: output folder.
        **kwargs: keys of :data:`BENCH_DEFAULTS`: ``methods`` (specs; the teacher row is added first when
            missing), ``max_frames``, ``binary`` (DAVIS-style foreground), ``cache`` (flow cache; default
            ``out/flow-cache``), ``flow``, ``preset``, ``window`` (measure settings), ``workers``, ``progress``.

    Returns:
        the ``results.json`` record.

    Raises:
        InputError naming the file: mismatched frame counts or sizes, unknown method specs, missing checkpoints.
    """
    from steadyseg.files import atomic_write_json, atomic_write_text, save_resolved_config

    unknown = set(kwargs) - set(BENCH_DEFAULTS)
    if unknown:
        raise TypeError(f"run_bench: unknown arguments {sorted(unknown)}")
    cfg = {**BENCH_DEFAULTS, **{k: v for k, v in kwargs.items() if v is not None}}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "the output must be a folder")
    if cfg["cache"] is None:
        cfg["cache"] = out / "flow-cache"
    rows = [parse_method(m) for m in cfg["methods"]]
    if not any(r.kind == "teacher" for r in rows):
        rows.insert(0, parse_method("teacher"))
    slugs = [r.slug for r in rows]
    if len(set(slugs)) != len(slugs):
        raise InputError(None, f"methods: the same row given twice: {sorted({s for s in slugs if slugs.count(s) > 1})}")
    for r in rows:
        if r.checkpoint is not None and not r.checkpoint.is_file():
            raise InputError(r.checkpoint, f"method {r.spec!r}: no such checkpoint")
    if not videos:
        raise InputError(None, "no videos: give --frames DIR --gt DIR --teacher DIR (or a manifest)")
    vids = []
    for i, v in enumerate(videos):
        v = {k: Path(v[k]) for k in ("frames", "gt", "teacher")} | {"name": v.get("name") or Path(v["frames"]).name}
        if any(v["name"] == w["name"] for w in vids):
            v["name"] = f"{v['name']}-{i}"
        vids.append(v)
    inputs_n = {r.slug: _model_inputs(r.checkpoint) for r in rows if r.kind == "decoder"}

    results: dict[str, Any] = {"videos": {}, "rows": [{"method": r.spec, "label": r.label, "slug": r.slug,
                                                        "inputs": inputs_n.get(r.slug)} for r in rows]}
    for v in vids:
        n = _video_length(v["frames"], v["gt"], v["teacher"], max_frames=cfg["max_frames"], binary=cfg["binary"])
        done: dict[str, dict[str, Any]] = {}
        table: dict[str, dict[str, Any]] = {}
        for r in rows:
            row_dir = out / v["name"] / r.slug
            inputs = {"frames": n, "max_frames": cfg["max_frames"], "binary": cfg["binary"],
                      "frames_dir": str(v["frames"]), "teacher": str(v["teacher"]),
                      "checkpoint": None if r.checkpoint is None else str(r.checkpoint.resolve()),
                      "checkpoint_mtime": None if r.checkpoint is None else r.checkpoint.stat().st_mtime}
            if r.kind == "decoder+wgf3d" and r.name in done:
                inputs["base"] = str(done[r.name]["masks"])
            post = r.postprocess()
            if post is not None:  # a changed filter default must not reuse the old masks
                inputs["postprocess"] = {"method": post[0], "params": post[1]}
            masks, fps = _produce(r, v, row_dir, inputs, cfg, done)
            if r.kind == "decoder":
                done[r.name] = {"masks": masks, "fps": fps}
            table[r.slug] = {**measure_row(masks, v, row_dir, cfg), "fps": fps}
        e0 = table[next(r.slug for r in rows if r.kind == "teacher")]["e_raw"]
        for rec in table.values():
            rec["e_raw_change"] = (rec["e_raw"] - e0) / e0 if e0 else None
        results["videos"][v["name"]] = table
    results["mean"] = {r.slug: mean_record([results["videos"][v["name"]][r.slug] for v in vids]) for r in rows}
    results["config"] = {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                         "cache": str(cfg["cache"]), "videos": [{k: str(x) for k, x in v.items()} for v in vids]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", format_tables(results))
    _plot_fig9(results, out / "fig9-recall-vs-eraw.png", y="recall")
    _plot_fig9(results, out / "fig9-iou-vs-eraw.png", y="iou")
    if len({n for n in inputs_n.values() if n is not None}) >= 2:
        _plot_fig7(results, out / "fig7-inputs.png")
    save_resolved_config(out, results["config"])
    return results


def mean_record(recs: list[dict[str, Any]], columns: Sequence[tuple[str, str, str]] = COLUMNS) -> dict[str, Any]:
    """The mean over ``recs`` of each column key (None and NaN values left out; None when nothing is left)."""
    out = {}
    for key, _, _ in columns:
        vals = [r.get(key) for r in recs]
        vals = [float(x) for x in vals if x is not None and not (isinstance(x, float) and math.isnan(x))]
        out[key] = float(np.mean(vals)) if vals else None
    return out


# ----------------------------------------------------------------------------------------------------------------
# Tables and plots
# ----------------------------------------------------------------------------------------------------------------
def markdown_table(title: str, labels: Sequence[str], rows: Sequence[tuple[Sequence[str], dict[str, Any]]],
                   columns: Sequence[tuple[str, str, str]] = COLUMNS) -> list[str]:
    """Lines of one ``## title`` markdown table: the ``labels`` columns (text), then ``columns`` formatted."""
    from steadyseg.measure_video import format_value

    lines = [f"## {title}", "", "| " + " | ".join([*labels, *(c[1] for c in columns)]) + " |",
             "|" + "---|" * len(labels) + "---:|" * len(columns)]
    for cells, rec in rows:
        lines.append("| " + " | ".join([*cells, *(format_value(rec.get(k), f) for k, _, f in columns)]) + " |")
    return lines + [""]


def markdown_report(heading: str, note: str, results: dict[str, Any], table) -> str:
    """``# heading``, the ``note``, then ``table(title, recs)`` for each video of ``results["videos"]`` and for
    ``results["mean"]`` (titled "Mean over N video(s)")."""
    lines = [f"# {heading}", "", note, ""]
    for name, recs in results["videos"].items():
        lines += table(name, recs)
    lines += table(f"Mean over {len(results['videos'])} video(s)", results["mean"])
    return "\n".join(lines)


def format_tables(results: dict[str, Any]) -> str:
    """``results.md``: one markdown table per video, then the mean over videos (columns of :data:`COLUMNS`)."""
    def table(title: str, recs: dict[str, dict[str, Any]]) -> list[str]:
        return markdown_table(title, ["Method"], [([row["label"]], recs[row["slug"]]) for row in results["rows"]])

    return markdown_report("steadyseg bench",
                           "E_cons and E_smooth use the ground truth's median boundary count (one normaliser per "
                           "video); ΔE_raw is the relative change of E_raw vs the teacher; fps of the method alone "
                           "(teacher: -).", results, table)


_FIG9_AXES = {"recall": ("recall (J recall)", "Recall"), "iou": ("IoU (mean J)", "IoU")}  # axis label, title word
_POINT_MARKERS = "^vDPX*"  # one per ten rows: matplotlib's colour cycle repeats after ten


def _plot_fig9(results: dict[str, Any], path: Path, *, y: str = "recall") -> None:
    """Fig. 9: mean ``y`` (``"recall"``, as the paper, or ``"iou"``) vs mean E_raw; the Gaussian rows joined as a
    front, the others labelled points."""
    from steadyseg.plots import pyplot, save_figure

    plt = pyplot()
    mean = results["mean"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    gauss = [(r, mean[r["slug"]]) for r in results["rows"] if r["method"].startswith("gauss:")]
    gauss.sort(key=lambda rm: float(rm[0]["method"].split(":")[1]))  # the front is the σ sweep, in σ order
    pts = [(m["e_raw"], m[y]) for _, m in gauss if m["e_raw"] is not None and m[y] is not None]
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "o-", color="tab:gray", label="temporal Gaussian σ")
        for r, m in gauss:
            ax.annotate(r["label"].split()[-1], (m["e_raw"], m[y]), fontsize=7, textcoords="offset points",
                        xytext=(3, 3))
    points = [r for r in results["rows"] if not r["method"].startswith("gauss:")
              and mean[r["slug"]]["e_raw"] is not None and mean[r["slug"]][y] is not None]
    for i, r in enumerate(points):
        m = mean[r["slug"]]
        marker = "s" if r["method"] == "teacher" else _POINT_MARKERS[(i // 10) % len(_POINT_MARKERS)]
        ax.plot([m["e_raw"]], [m[y]], marker, label=r["label"])
    ax.set_xlabel("E_raw (raw temporal inconsistency, lower is better)")
    ax.set_ylabel(_FIG9_AXES[y][0])
    ax.set_title(f"{_FIG9_AXES[y][1]} vs inconsistency, mean of {len(results['videos'])} video(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _plot_fig7(results: dict[str, Any], path: Path) -> None:
    """Fig. 7: number of inputs N of the decoder rows vs mean recall, E_cons and E_smooth.

    Every decoder row is a labelled point; the line joins, in N order, the first row given for each N (several
    decoders of one N, e.g. plain and flow-guided, are points of their own)."""
    from steadyseg.plots import pyplot, save_figure

    plt = pyplot()
    pts = sorted(((r["inputs"], r["label"], results["mean"][r["slug"]]) for r in results["rows"]
                  if r["inputs"] is not None and r["method"].startswith("decoder:")), key=lambda p: p[0])
    first: dict[int, dict[str, Any]] = {}
    for n, _, m in pts:
        first.setdefault(n, m)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, (key, title) in zip(axes, (("recall", "recall"), ("e_cons", "E_cons"), ("e_smooth", "E_smooth"))):
        def value(m: dict[str, Any]) -> float:
            return m[key] if m[key] is not None else np.nan

        ax.plot(list(first), [value(m) for m in first.values()], "-", color="tab:gray")
        for n, label, m in pts:
            ax.plot([n], [value(m)], "o")
            ax.annotate(label, (n, value(m)), fontsize=6, textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("N (input frames)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    save_figure(fig, path)
