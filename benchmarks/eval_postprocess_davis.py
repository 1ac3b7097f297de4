"""Evaluate video post-processing on DAVIS 2016 with OSVOS per-frame predictions (paper Table 2 and Fig. 9).

For each sequence of ``../shared/data/davis2017-osvos`` (OSVOS output, flickering) against the DAVIS 2016 ground
truth, report inconsistency (E_cons with the GT's median boundary as the shared normaliser, and E_raw),
smoothness E_smooth (sigma 1, same normaliser), mean IoU, J-recall and boundary F of: the raw OSVOS masks, 2D WGF,
3D WGF (a few temporal radii) and temporal Gaussian smoothing at several sigmas; the GT itself is the floor.
Flow: OpenCV DIS medium, K = 3, computed once and cached under ``--flow-cache`` (git-ignored ``artifacts/``).

    python benchmarks/eval_postprocess_davis.py [--max-frames 40] [--out artifacts/postprocess-eval]
        [--plot docs/img/postprocess_recall_vs_inconsistency.png]

Writes ``results.json`` (per sequence, per method) and ``table.md`` (means) under ``--out`` and prints the table.
A script to run once, not a test.

``--sweep``: the front of the 3D WGF over guide, r, rt and eps (:data:`SWEEP`), measured with the project's measure
(:func:`steadyseg.measure_video.measure_videos`, DIS medium, K = 3, flows and validity masks from ``--flow-cache``)::

    python benchmarks/make_page.py record eval_postprocess_sweep -- \
        python benchmarks/eval_postprocess_davis.py --sweep --flow-cache DIR [--max-frames N]

Each setting filters the OSVOS masks of every sequence (written as {0, 255} PNGs under ``--out``/sweep-masks), then
one ``measure_videos`` call per sequence measures the teacher (raw OSVOS) and every setting against the DAVIS 2016
ground truth. Reported per setting: the mean over sequences of the relative change of E_raw against the teacher,
mean J, J-recall, F; the settings on the front (no other setting has both lower E_raw and higher J) are marked.
Writes ``--json`` (a benchmark record's output when run through ``make_page.py record``), ``sweep.json`` under
``--out`` and the front plot (``--sweep-plot``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from steadyseg.accuracy import davis_scores
from steadyseg.datasets.flow import FlowProvider, window_pairs
from steadyseg.datasets.masks import open_masks
from steadyseg.datasets.video import open_video
from steadyseg.files import atomic_write_json, atomic_write_text, save_resolved_config
from steadyseg.measures import inconsistency, smoothness
from steadyseg.refine.postprocess.video_filter import WGF_PRESETS, filter_probabilities

from steadyseg.datasets.davis import DAVIS2016_SEQUENCES as SEQUENCES  # noqa: E402 - one list for all
REPO = Path(__file__).resolve().parents[1]

# name -> (method, params); the WGF rows pin every parameter (colour guide, eps 1e-3: the documented tables) so that
# a change of the defaults does not change what they measure
METHODS: dict[str, tuple[str, dict]] = {
    "2D WGF r8": ("wgf", dict(radius=8, temporal_radius=0, eps=1e-3, guide="color")),
    "3D WGF r8 rt1": ("wgf", dict(radius=8, temporal_radius=1, eps=1e-3, guide="color")),
    "3D WGF r8 rt2": ("wgf", dict(radius=8, temporal_radius=2, eps=1e-3, guide="color")),
    "gauss s0.75": ("gauss", dict(sigma=0.75)),
    "gauss s1": ("gauss", dict(sigma=1.0)),
    "gauss s1.5": ("gauss", dict(sigma=1.5)),
    "gauss s2": ("gauss", dict(sigma=2.0)),
    "gauss s3": ("gauss", dict(sigma=3.0)),
}


def evaluate_sequence(seq: str, data: Path, *, max_frames: int | None, flow_cache: Path, window: int,
                      n_jobs: int) -> dict:
    frames = open_video(data / "davis2016" / "JPEGImages" / "480p" / seq, max_frames=max_frames)
    gt_stack = open_masks(data / "davis2016" / "Annotations" / "480p" / seq, binary=True)
    pred_stack = open_masks(data / "davis2017-osvos" / seq, binary=True)
    T = len(frames)
    gt = [gt_stack[i] for i in range(T)]
    raw = [pred_stack[i] for i in range(T)]
    flows = FlowProvider(frames, backend="dis", preset="medium", cache_dir=flow_cache, n_jobs=n_jobs,
                         memory_items=4 * window + 4)
    flows.precompute(window_pairs(T, window), progress=True)

    def measure(masks: list[np.ndarray]) -> dict:
        inc = inconsistency(masks, flows, window=window, normalizer=gt)
        acc = davis_scores(masks, gt, binary=True)
        return dict(E_cons=inc.e_cons, E_raw=inc.e_raw, normalizer=inc.normalizer,
                    E_smooth=smoothness(masks, sigma=1.0, normalizer=gt), IoU=acc["mean_iou"],
                    J_recall=acc["J_recall"], F_mean=acc["F_mean"], seconds=0.0)

    rows = {"GT": measure(gt), "OSVOS (raw)": measure(raw)}
    probs = [pred_stack.probs(i) for i in range(T)]
    for name, (method, params) in METHODS.items():
        start = time.perf_counter()
        out = [np.argmax(q, axis=0).astype(np.int32)
               for q in filter_probabilities(iter(probs), method=method, frames=frames, **params)]
        sec = time.perf_counter() - start
        assert len(out) == T
        rows[name] = measure(out)
        rows[name]["seconds"] = sec
        rows[name]["fps"] = T / sec
    return dict(frames=T, rows=rows)


def _fmt_table(results: dict, names: list[str]) -> str:
    cols = ["E_cons", "E_raw", "E_smooth", "IoU", "J_recall", "F_mean"]
    lines = ["| method | " + " | ".join(cols) + " | Δ E_raw (mean of per-sequence changes) |",
             "|---" * (len(cols) + 2) + "|"]
    seqs = list(results)
    base = np.mean([results[s]["rows"]["OSVOS (raw)"]["E_raw"] for s in seqs])
    for name in names:
        means = {c: float(np.nanmean([results[s]["rows"][name][c] for s in seqs])) for c in cols}
        # relative change of the mean of per-sequence relative changes
        rel = np.mean([results[s]["rows"][name]["E_raw"] / results[s]["rows"]["OSVOS (raw)"]["E_raw"] - 1
                       for s in seqs])
        lines.append(f"| {name} | " + " | ".join(f"{means[c]:.3f}" if c != "E_raw" else f"{means[c]:.4f}"
                                                 for c in cols) + f" | {100 * rel:+.1f} % |")
    del base
    return "\n".join(lines)


def _fmt_per_sequence(results: dict, names: list[str], col: str) -> str:
    seqs = list(results)
    lines = [f"| {col} | " + " | ".join(seqs) + " |", "|---" * (len(seqs) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{results[s]['rows'][name][col]:.3f}" for s in seqs) + " |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seqs = list(results)
    methods = [n for n in results[seqs[0]]["rows"] if n not in ("GT", "OSVOS (raw)")]
    mean = lambda name, c: float(np.nanmean([results[s]["rows"][name][c] for s in seqs]))  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, col in zip(axes, ["E_cons", "E_raw"]):
        g = [n for n in methods if n.startswith("gauss")]
        ax.plot([mean(n, col) for n in g], [mean(n, "J_recall") for n in g], "k.-", label="temporal Gaussian σ")
        for n in g:
            ax.annotate(n.split()[-1].replace("s", "σ="), (mean(n, col), mean(n, "J_recall")), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        w = [n for n in methods if "WGF" in n]
        ax.plot([mean(n, col) for n in w], [mean(n, "J_recall") for n in w], "rs", label="WGF (2D / 3D)")
        for n in w:
            ax.annotate(n.replace("WGF ", ""), (mean(n, col), mean(n, "J_recall")), fontsize=7, color="r",
                        xytext=(3, -9), textcoords="offset points")
        ax.plot(mean("OSVOS (raw)", col), mean("OSVOS (raw)", "J_recall"), "bo", label="OSVOS raw")
        ax.plot(mean("GT", col), mean("GT", "J_recall"), "g*", ms=10, label="ground truth (floor)")
        ax.set_xlabel(f"inconsistency {col} (lower is better)")
        ax.set_ylabel("J-recall (higher is better)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    n_frames = sorted({results[s]["frames"] for s in seqs})
    total = sum(results[s]["frames"] for s in seqs)
    extent = (f"{n_frames[0]} frames each" if len(n_frames) == 1
              else f"{n_frames[0]}–{n_frames[-1]} frames per sequence, {total} in all")
    fig.suptitle(f"DAVIS 2016, OSVOS per-frame masks, mean over {len(seqs)} sequences "
                 f"({extent}, DIS-medium flow, K=3)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------- sweep
def _wgf(guide: str, r: int, rt: int, eps: float) -> tuple[str, dict]:
    name = f"{guide} r{r} rt{rt} eps{eps:g}"
    return name, dict(guide=guide, radius=r, temporal_radius=rt, eps=eps)


#: the sweep of :func:`run_sweep`: name -> wgf params (weights on, as the CLI's default; on hard masks they are 1)
SWEEP: dict[str, dict] = dict([
    _wgf("color", 8, 0, 1e-3),                                   # 2D, for reference
    *[_wgf("color", r, rt, 1e-3) for r, rt in [(2, 2), (4, 1), (4, 2), (8, 1), (8, 2), (8, 3), (8, 4), (16, 2)]],
    *[_wgf("color", r, rt, 1e-2) for r, rt in [(4, 2), (8, 2)]],
    *[_wgf("gray", r, rt, 1e-3) for r, rt in [(4, 2), (8, 2)]],
    *[_wgf("gray", r, rt, 1e-2) for r, rt in [(4, 1), (4, 2), (8, 1), (8, 2), (8, 3)]],
])
TEACHER = "OSVOS (raw)"


def _write_binary_masks(folder: Path, names: list[str], labels: list[np.ndarray]) -> None:
    """Write (H, W) {0, 1} label maps as DAVIS-2016 {0, 255} grayscale PNGs named ``<name>.png``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, lab in zip(names, labels):
        Image.fromarray(np.where(lab == 1, 255, 0).astype(np.uint8), mode="L").save(folder / f"{name}.png",
                                                                                   compress_level=1)


def sweep_sequence(seq: str, data: Path, *, settings: dict[str, dict], max_frames: int | None, flow_cache: Path,
                   window: int, workers: int, mask_root: Path) -> dict:
    """Filter one sequence's OSVOS masks with every setting and measure them all (and the teacher) in one call.

    Returns ``{"frames": T, "rows": {name: {E_cons, E_raw, J, J_recall, F, IoU, filter_fps}}}`` with the teacher
    under :data:`TEACHER`.
    """
    from steadyseg.measure_video import measure_videos

    frames_dir = data / "davis2016" / "JPEGImages" / "480p" / seq
    gt_dir = data / "davis2016" / "Annotations" / "480p" / seq
    osvos_dir = data / "davis2017-osvos" / seq
    frames = open_video(frames_dir, max_frames=max_frames)
    pred = open_masks(osvos_dir, binary=True, max_frames=len(frames))
    T = len(frames)
    names = pred.names[:T]
    probs = [pred.probs(i) for i in range(T)]
    folders, fps = {}, {}
    for name, params in settings.items():
        start = time.perf_counter()
        labels = [np.argmax(q, axis=0) for q in filter_probabilities(iter(probs), method="wgf", frames=frames,
                                                                     **params)]
        fps[name] = T / (time.perf_counter() - start)
        folders[name] = mask_root / name.replace(" ", "_") / seq
        _write_binary_masks(folders[name], names, labels)
    results = measure_videos(frames=frames_dir, masks=[osvos_dir] + list(folders.values()), gt=gt_dir, binary=True,
                             window=window, cache=flow_cache, workers=workers, max_frames=max_frames, progress=False)
    rows = {}
    for name, res in zip([TEACHER] + list(folders), results):
        rows[name] = dict(E_cons=res["inconsistency"], E_raw=res["inconsistency_raw"], J=res["j_mean"],
                          J_recall=res["j_recall"], F=res["f_mean"], IoU=res["iou"], filter_fps=fps.get(name),
                          flow_pairs_computed=res["timing"]["flow_pairs_computed"])
    return dict(frames=T, rows=rows)


def pareto_front(points: dict[str, tuple[float, ...]]) -> list[str]:
    """Names whose costs (all to be minimised, e.g. ``(relative E_raw, -J)``) no other point beats: another point
    dominates when it is no worse in every cost and better in one. Returned in order of the first cost."""
    def dominates(u, v):
        return all(a <= b for a, b in zip(u, v)) and any(a < b for a, b in zip(u, v))

    front = [n for n, c in points.items() if not any(dominates(c2, c) for m, c2 in points.items() if m != n)]
    return sorted(front, key=lambda n: points[n][0])


def summarise_sweep(per_seq: dict[str, dict], settings: dict[str, dict]) -> list[dict]:
    """One flat row per setting (teacher first): means over the sequences, the mean relative E_raw change against
    the teacher (``dE_raw_rel``, e.g. -0.25 = 25 % less), ``dJ_pt`` (J minus the teacher's, in points),
    ``front`` (on the E_raw / J front), ``delay_frames`` (2 rt) and ``front_with_delay`` (on the E_raw / J / delay
    front)."""
    seqs = list(per_seq)
    names = [TEACHER] + list(settings)
    mean = lambda n, c: float(np.mean([per_seq[s]["rows"][n][c] for s in seqs]))  # noqa: E731
    rel = {n: float(np.mean([per_seq[s]["rows"][n]["E_raw"] / per_seq[s]["rows"][TEACHER]["E_raw"] - 1
                             for s in seqs])) for n in names}
    j_teacher = mean(TEACHER, "J")
    front = set(pareto_front({n: (rel[n], -mean(n, "J")) for n in names}))
    # with the streaming delay 2 rt (frames) as a third cost: shorter windows that are less steady stay on it
    delay = {n: 2 * settings.get(n, {}).get("temporal_radius", 0) for n in names}
    front_delay = set(pareto_front({n: (rel[n], -mean(n, "J"), delay[n]) for n in names}))
    rows = []
    for n in names:
        p = settings.get(n, {})
        fps = [per_seq[s]["rows"][n]["filter_fps"] for s in seqs]
        rows.append(dict(setting=n, guide=p.get("guide"), radius=p.get("radius"),
                         temporal_radius=p.get("temporal_radius"), eps=p.get("eps"), dE_raw_rel=rel[n],
                         E_raw=mean(n, "E_raw"), E_cons=mean(n, "E_cons"), J=mean(n, "J"),
                         dJ_pt=100 * (mean(n, "J") - j_teacher), J_recall=mean(n, "J_recall"), F=mean(n, "F"),
                         IoU=mean(n, "IoU"), front=n in front, delay_frames=delay[n],
                         front_with_delay=n in front_delay,
                         filter_fps=None if None in fps else float(np.median(fps))))
    return rows


def _fmt_sweep(rows: list[dict]) -> str:
    lines = ["| setting | delay (frames) | Δ E_raw vs teacher | E_raw | J | Δ J (pt) | J-recall | F | "
             "E_raw / J front | E_raw / J / delay front |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['delay_frames']} | {100 * r['dE_raw_rel']:+.1f} % | {r['E_raw']:.4f} | "
                     f"{r['J']:.4f} | {r['dJ_pt']:+.2f} | {r['J_recall']:.3f} | {r['F']:.3f} | "
                     f"{'yes' if r['front'] else ''} | {'yes' if r['front_with_delay'] else ''} |")
    return "\n".join(lines)


def plot_sweep(rows: list[dict], path: Path, *, title: str, presets: dict[str, str] | None = None) -> None:
    """Front plot: J and J-recall against the relative E_raw change, front joined, teacher and presets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = presets or {}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, col, label in zip(axes, ["J", "J_recall"], ["mean J (higher is better)", "J-recall"]):
        for r in rows:
            x, y = 100 * r["dE_raw_rel"], r[col]
            if r["setting"] == TEACHER:
                ax.plot(x, y, "bo", ms=8, label="teacher (OSVOS raw)")
                ax.axhline(y, color="b", lw=0.7, ls="--")
                continue
            colour = "r" if r["front"] else ("darkorange" if r["front_with_delay"] else "0.5")
            ax.plot(x, y, "s" if r["guide"] == "color" else "^", color=colour, ms=6)
            tag = r["setting"] + (f" [{presets[r['setting']]}]" if r["setting"] in presets else "")
            ax.annotate(tag, (x, y), fontsize=6.5, xytext=(3, 3), textcoords="offset points",
                        color=colour if colour != "0.5" else "0.35",
                        weight="bold" if r["setting"] in presets else None)
        front = sorted([r for r in rows if r["front"]], key=lambda r: r["dE_raw_rel"])
        ax.plot([100 * r["dE_raw_rel"] for r in front], [r[col] for r in front], "r-", lw=1,
                label="E_raw / J front (red; orange: on the front once the delay 2 rt counts; "
                      "squares colour guide, triangles gray)")
        ax.set_xlabel("Δ E_raw vs teacher, % (mean of per-sequence changes; lower = steadier)", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6.5, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_sweep(args: argparse.Namespace) -> int:
    """``--sweep``: every :data:`SWEEP` setting on every sequence; table, JSON, front plot."""
    data, out = Path(args.data), Path(args.out)
    settings = {n: p for n, p in SWEEP.items() if not args.settings or n in args.settings}
    if args.settings and len(settings) != len(args.settings):
        raise ValueError(f"--settings: unknown name(s) {sorted(set(args.settings) - set(SWEEP))}; see SWEEP")
    per_seq = {}
    if args.report_only:
        per_seq = json.loads((out / "sweep.json").read_text())["per_sequence"]
    for seq in [] if args.report_only else args.sequences:
        t0 = time.perf_counter()
        per_seq[seq] = sweep_sequence(seq, data, settings=settings, max_frames=args.max_frames,
                                      flow_cache=Path(args.flow_cache), window=args.window, workers=args.n_jobs,
                                      mask_root=out / "sweep-masks")
        computed = sum(r["flow_pairs_computed"] or 0 for r in per_seq[seq]["rows"].values())
        print(f"{seq}: {per_seq[seq]['frames']} frames, {time.perf_counter() - t0:.0f} s, "
              f"{computed} flow pairs computed", flush=True)
        atomic_write_json(out / "sweep.json", dict(per_sequence=per_seq))
    rows = summarise_sweep(per_seq, settings)
    table = _fmt_sweep(rows)
    print(table)
    presets = {}
    for preset, params in WGF_PRESETS.items():
        for name, p in settings.items():
            if all(params.get(k) == v for k, v in p.items()):
                presets[name] = preset
    n_frames = sum(v["frames"] for v in per_seq.values())
    extent = "full length" if args.max_frames is None else f"first {args.max_frames} frames"
    title = (f"3D WGF sweep on DAVIS 2016 with OSVOS teacher masks: {len(per_seq)} sequences, {extent} "
             f"({n_frames} frames), DIS-medium flow, K={args.window}")
    output = dict(sequences=list(per_seq), max_frames=args.max_frames, frames=n_frames, window=args.window,
                  flow="dis-medium", settings=settings, presets=WGF_PRESETS, results=rows, table=table,
                  per_sequence={s: {n: {k: v for k, v in r.items() if k != "flow_pairs_computed"}
                                    for n, r in per_seq[s]["rows"].items()} for s in per_seq})
    atomic_write_text(out / "sweep.md", table + "\n")
    if args.json:
        atomic_write_json(args.json, output)
    for p in args.sweep_plot:
        plot_sweep(rows, Path(p), title=title, presets=presets)
    print(json.dumps({"plots": args.sweep_plot, "sweep": str(out / "sweep.json")}))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--sequences", nargs="*", default=SEQUENCES)
    ap.add_argument("--max-frames", type=int, default=None, help="first N frames of each sequence (default all)")
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--flow-cache", "--cache", dest="flow_cache", default=str(REPO / "artifacts" / "flow-cache"),
                    help="flow cache folder (flows and validity masks; the same as `steadyseg measure --cache`)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "artifacts" / "postprocess-eval"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "img" / "postprocess_recall_vs_inconsistency.png"))
    ap.add_argument("--report-only", action="store_true",
                    help="only rebuild the table and plot from an existing --out/results.json")
    ap.add_argument("--sweep", action="store_true",
                    help="the WGF sweep over guide / r / rt / eps instead of the method comparison (see above)")
    ap.add_argument("--json", default=None, help="--sweep: write the summary here (make_page.py record passes it)")
    ap.add_argument("--sweep-plot", nargs="*",
                    default=[str(REPO / "benchmarks" / "results" / "postprocess_wgf_front.png"),
                             str(REPO / "docs" / "img" / "postprocess_wgf_front.png")],
                    help="--sweep: front plot PNG(s)")
    ap.add_argument("--settings", nargs="*", default=None, help="--sweep: only these SWEEP names")
    args = ap.parse_args(argv)
    if args.sweep:
        return run_sweep(args)
    data = Path(args.data)
    out = Path(args.out)
    results = {}
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
    for seq in [] if args.report_only else args.sequences:
        t0 = time.perf_counter()
        results[seq] = evaluate_sequence(seq, data, max_frames=args.max_frames, flow_cache=Path(args.flow_cache),
                                         window=args.window, n_jobs=args.n_jobs)
        print(f"{seq}: {results[seq]['frames']} frames, {time.perf_counter() - t0:.0f} s", flush=True)
        atomic_write_json(out / "results.json", results)
    names = list(next(iter(results.values()))["rows"])  # GT, OSVOS (raw), then the methods
    table = _fmt_table(results, names)
    per_seq = "\n\n".join(_fmt_per_sequence(results, names, c) for c in ["E_cons", "E_raw", "IoU", "J_recall"])
    atomic_write_text(out / "table.md", table + "\n\n" + per_seq + "\n")
    save_resolved_config(out, dict(sequences=list(results), max_frames=args.max_frames, window=args.window,
                                   flow="dis-medium", methods={k: list(v) for k, v in METHODS.items()}))
    print(table)
    print()
    print(per_seq)
    plot(results, Path(args.plot))
    print(json.dumps({"plot": args.plot, "results": str(out / "results.json")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
