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
from steadyseg.refine.postprocess.video_filter import filter_probabilities

from steadyseg.datasets.davis import DAVIS2016_SEQUENCES as SEQUENCES  # noqa: E402 - one list for all
REPO = Path(__file__).resolve().parents[1]

# name -> (method, params)
METHODS: dict[str, tuple[str, dict]] = {
    "2D WGF r8": ("wgf", dict(radius=8, temporal_radius=0)),
    "3D WGF r8 rt1": ("wgf", dict(radius=8, temporal_radius=1)),
    "3D WGF r8 rt2": ("wgf", dict(radius=8, temporal_radius=2)),
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--sequences", nargs="*", default=SEQUENCES)
    ap.add_argument("--max-frames", type=int, default=None, help="first N frames of each sequence (default all)")
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--flow-cache", default=str(REPO / "artifacts" / "flow-cache"))
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "artifacts" / "postprocess-eval"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "img" / "postprocess_recall_vs_inconsistency.png"))
    ap.add_argument("--report-only", action="store_true",
                    help="only rebuild the table and plot from an existing --out/results.json")
    args = ap.parse_args(argv)
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
