"""Rating statistics of the user study (paper §4): Spearman correlations of mean crowd ratings with the measures,
the §4.1 worker qualification filter, agreement between workers and the §4.2 low-agreement split.

Ratings are Likert 1-5 where **higher = more consistent**. Corruption levels and the measures (E_cons, E_smooth)
grow with inconsistency, so a worker who understands the task has a NEGATIVE Spearman correlation between their
ratings and the consistency level, and good measures correlate NEGATIVELY with the mean rating. The qualification
filter compares magnitudes ``|rho|`` (the paper's "higher correlation"), so the sign of the scale does not change
who is dropped; the signs are reported as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["spearman", "qualify_worker", "analyze_ratings", "grid_axis_correlations", "format_report"]


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """``(rho, p_value, n)`` of ``scipy.stats.spearmanr`` over the pairs where both are finite.

    NaN (with ``n`` still reported) when fewer than 3 pairs remain or either side is constant.
    """
    from scipy.stats import spearmanr

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(a.size)
    if n < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan"), float("nan"), n
    res = spearmanr(a, b)
    return float(res.statistic), float(res.pvalue), n


def _rows_from(obj: Any, what: str) -> list[dict[str, Any]]:
    """Rows (dicts) from a list of dicts / tuples, a dict of columns, or a pandas-like DataFrame."""
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame, without importing pandas
        return [dict(r) for r in obj.to_dict("records")]
    if isinstance(obj, Mapping):
        cols = {k: list(v) for k, v in obj.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"{what}: columns of unequal length {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]
    rows = []
    for r in obj:
        if isinstance(r, Mapping):
            rows.append(dict(r))
        else:
            rows.append(dict(zip(("video", "worker", "rating"), r)))
    return rows


def _to_float(value: Any) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return float("nan")
    return float(value)


def _normalise_ratings(ratings: Any) -> list[tuple[str, str, float]]:
    out = []
    for k, r in enumerate(_rows_from(ratings, "ratings")):
        missing = {"video", "worker", "rating"} - set(r)
        if missing:
            raise ValueError(f"ratings row {k}: missing column(s) {sorted(missing)} (need video, worker, rating)")
        try:
            value = _to_float(r["rating"])
        except (TypeError, ValueError):
            raise ValueError(f"ratings row {k}: rating {r['rating']!r} is not a number") from None
        if not np.isfinite(value):
            continue  # an empty cell is "not rated"
        if not 1.0 <= value <= 5.0:
            raise ValueError(f"ratings row {k}: rating {value} outside the Likert range 1-5")
        out.append((str(r["video"]), str(r["worker"]), value))
    if not out:
        raise ValueError("ratings: no ratings")
    return out


def _normalise_measures(measures: Any) -> dict[str, dict[str, float]]:
    """``{video: {measure: value}}`` from that mapping itself or from rows with a ``video`` column."""
    if isinstance(measures, Mapping) and all(isinstance(v, Mapping) for v in measures.values()) \
            and "video" not in measures:
        return {str(v): {str(k): _to_float(x) for k, x in m.items()} for v, m in measures.items()}
    out: dict[str, dict[str, float]] = {}
    for k, r in enumerate(_rows_from(measures, "measures")):
        if "video" not in r:
            raise ValueError(f"measures row {k}: no 'video' column")
        out[str(r["video"])] = {str(c): _to_float(x) for c, x in r.items() if c != "video"}
    return out


def _normalise_grid(grid: Any) -> dict[str, tuple[int, int]]:
    """``{video: (accuracy_level, consistency_level)}`` from a grid.json dict, a list of them, or that mapping."""
    if grid is None:
        return {}
    if isinstance(grid, (list, tuple)):
        merged: dict[str, tuple[int, int]] = {}
        for g in grid:
            merged.update(_normalise_grid(g))
        return merged
    if isinstance(grid, Mapping) and "videos" in grid:
        grid = grid["videos"]
    out = {}
    for video, levels in grid.items():
        if isinstance(levels, Mapping):
            out[str(video)] = (int(levels["accuracy_level"]), int(levels["consistency_level"]))
        else:
            out[str(video)] = (int(levels[0]), int(levels[1]))
    return out



def qualify_worker(ratings: Mapping[str, float], grid: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """The §4.1 qualification test for one worker.

    Args:
        ratings: ``{video: rating}`` of this worker (only qualification videos in ``grid`` are used).
        grid: ``{video: (accuracy_level, consistency_level)}``.

    Returns:
        dict with ``rho_accuracy``, ``p_accuracy``, ``rho_consistency``, ``p_consistency``, ``n`` (qualification
        videos rated), ``qualified`` and ``reason``. Rule: dropped when ``|rho_accuracy| > |rho_consistency|``; a
        worker whose ``rho_consistency`` is undefined (fewer than 3 qualification ratings, or all equal) cannot
        show they follow consistency and is dropped too; an undefined ``rho_accuracy`` counts as 0.
        ``sign_ok`` is ``rho_consistency < 0`` (higher rating = more consistent = lower corruption level).
    """
    videos = [v for v in ratings if v in grid]
    r = [ratings[v] for v in videos]
    ra, pa, n = spearman(r, [grid[v][0] for v in videos])
    rc, pc, _ = spearman(r, [grid[v][1] for v in videos])
    if not np.isfinite(rc):
        qualified, reason = False, f"consistency correlation undefined ({n} qualification ratings)"
    elif abs(ra if np.isfinite(ra) else 0.0) > abs(rc):
        qualified, reason = False, "follows accuracy more than consistency"
    else:
        qualified, reason = True, "follows consistency"
    return {"n": n, "rho_accuracy": ra, "p_accuracy": pa, "rho_consistency": rc, "p_consistency": pc,
            "sign_ok": bool(np.isfinite(rc) and rc < 0), "qualified": qualified, "reason": reason}


def _measure_correlations(videos: Sequence[str], mean_rating: Mapping[str, float],
                          measures: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        x = [mean_rating[v] for v in videos]
        y = [measures.get(v, {}).get(name, float("nan")) for v in videos]
        rho, p, n = spearman(x, y)
        out[name] = {"rho": rho, "p": p, "n": n}
    return out


def analyze_ratings(ratings: Any, measures: Any = None, grid: Any = None, *,
                    low_agreement_std: float = 1.0) -> dict[str, Any]:
    """Analyse crowd ratings the way the paper's §4 does.

    Args:
        ratings: rows ``(video, worker, rating)`` — a list of dicts or tuples, a dict of columns, or a pandas
            DataFrame. Ratings are Likert 1-5, higher = more consistent; empty ratings are ignored.
        measures: per-video measures, ``{video: {name: value}}`` or rows with a ``video`` column plus one column
            per measure (E_cons, E_smooth, ...); ``None`` for no correlations.
        grid: qualification videos: a ``grid.json`` dict from ``make-grid`` (``{"videos": {name: {...}}}``), a list
            of them, or ``{video: (accuracy_level, consistency_level)}``. ``None``: no worker filter.
        low_agreement_std: videos whose ratings (qualified workers) have a population std (ddof=0) above this are
            "low agreement" (§4.2).

    Returns:
        A JSON-serialisable dict:

        - ``workers``: per worker the qualification result (``qualify_worker``) or ``{"qualified": True}``
          without a grid; ``n_workers``, ``n_qualified``;
        - ``videos``: per video ``mean``, ``std``, ``n`` over qualified workers, and ``qualification`` (bool);
          ``mean_rating`` (mean of video means), ``mean_std``;
        - ``agreement``: mean pairwise Spearman between qualified workers over the study videos both rated
          (pairs with < 3 common videos or constant ratings are skipped), with ``n_pairs``;
        - ``correlations``: ``{measure: {rho, p, n}}``, Spearman between the mean rating and the measure over the
          study videos (non-qualification videos; every video when there is no grid). With higher = more
          consistent ratings, a good inconsistency measure has a NEGATIVE rho;
        - ``low_agreement``: ``threshold``, ``removed`` videos, and ``correlations`` again without them;
        - ``qualification_check`` (with a grid and measures on the grid videos): Spearman of each measure with the
          accuracy and consistency level — a measure of consistency should follow the consistency axis only.
    """
    rows = _normalise_ratings(ratings)
    meas = _normalise_measures(measures) if measures is not None else {}
    levels = _normalise_grid(grid)

    by_worker: dict[str, dict[str, float]] = defaultdict(dict)
    for video, worker, value in rows:
        if video in by_worker[worker]:
            raise ValueError(f"ratings: worker {worker!r} rated video {video!r} more than once")
        by_worker[worker][video] = value

    workers: dict[str, dict[str, Any]] = {}
    for w in sorted(by_worker):
        workers[w] = qualify_worker(by_worker[w], levels) if levels else {"qualified": True, "reason": "no grid"}
    qualified = [w for w in workers if workers[w]["qualified"]]

    per_video: dict[str, list[float]] = defaultdict(list)
    for w in qualified:
        for v, value in by_worker[w].items():
            per_video[v].append(value)
    videos = {v: {"mean": float(np.mean(r)), "std": float(np.std(r)), "n": len(r), "qualification": v in levels}
              for v, r in sorted(per_video.items())}
    mean_rating = {v: d["mean"] for v, d in videos.items()}
    study_videos = [v for v in videos if v not in levels]

    rhos = []
    for a in range(len(qualified)):
        for b in range(a + 1, len(qualified)):
            ra, rb = by_worker[qualified[a]], by_worker[qualified[b]]
            common = [v for v in ra if v in rb and v not in levels]
            rho, _, _ = spearman([ra[v] for v in common], [rb[v] for v in common])
            if np.isfinite(rho):
                rhos.append(rho)
    agreement = {"mean_pairwise_spearman": float(np.mean(rhos)) if rhos else float("nan"), "n_pairs": len(rhos)}

    names = sorted({k for m in meas.values() for k in m})
    study_std = [videos[v]["std"] for v in study_videos]
    result: dict[str, Any] = {
        "n_workers": len(workers), "n_qualified": len(qualified), "workers": workers,
        "n_videos": len(videos), "n_study_videos": len(study_videos), "videos": videos,
        "mean_rating": float(np.mean([mean_rating[v] for v in study_videos])) if study_videos else float("nan"),
        "mean_std": float(np.mean(study_std)) if study_std else float("nan"),
        "agreement": agreement,
        "correlations": _measure_correlations(study_videos, mean_rating, meas, names),
    }
    removed = [v for v in study_videos if videos[v]["std"] > low_agreement_std]
    kept = [v for v in study_videos if v not in removed]
    result["low_agreement"] = {"threshold": float(low_agreement_std), "removed": removed, "n_kept": len(kept),
                               "correlations": _measure_correlations(kept, mean_rating, meas, names)}
    if levels and meas:
        check = {}
        qv = [v for v in levels if v in meas]
        for name in names:
            y = [meas[v].get(name, float("nan")) for v in qv]
            ra, pa, n = spearman([levels[v][0] for v in qv], y)
            rc, pc, _ = spearman([levels[v][1] for v in qv], y)
            check[name] = {"rho_accuracy": ra, "p_accuracy": pa, "rho_consistency": rc, "p_consistency": pc, "n": n}
        result["qualification_check"] = check
    return result


def grid_axis_correlations(values: Mapping[tuple[int, int], float]) -> dict[str, float]:
    """How a per-cell measure ``{(acc, cons): value}`` follows each axis of the grid.

    Returns ``rho_accuracy`` / ``p_accuracy`` and ``rho_consistency`` / ``p_consistency`` (Spearman of the value
    with the level index over all cells, ``n`` cells), and the effect sizes ``effect_accuracy`` /
    ``effect_consistency``: the mean change of the value from the first to the last level of that axis, averaged
    over the levels of the other axis, with ``effect_ratio = effect_accuracy / effect_consistency``.

    Why both: with three tied levels per axis, Spearman saturates. A measure that ranks the consistency levels
    perfectly gets rho = sqrt(0.9) = 0.949, and ANY systematic accuracy effect, however small, that orders the
    cells within every consistency level gives |rho_accuracy| = sqrt(0.1) = 0.316. The ratio says how large it is.
    """
    cells = sorted(values)
    y = [values[c] for c in cells]
    ra, pa, n = spearman([c[0] for c in cells], y)
    rc, pc, _ = spearman([c[1] for c in cells], y)
    accs = sorted({c[0] for c in cells})
    conss = sorted({c[1] for c in cells})

    def effect(first, last, along_acc: bool) -> float:
        diffs = []
        for other in (conss if along_acc else accs):
            a, b = ((first, other), (last, other)) if along_acc else ((other, first), (other, last))
            if a in values and b in values:
                diffs.append(values[b] - values[a])
        return float(np.mean(diffs)) if diffs else float("nan")

    ea = effect(accs[0], accs[-1], True)
    ec = effect(conss[0], conss[-1], False)
    ratio = ea / ec if np.isfinite(ec) and ec != 0 else float("nan")
    return {"rho_accuracy": ra, "p_accuracy": pa, "rho_consistency": rc, "p_consistency": pc, "n": n,
            "effect_accuracy": ea, "effect_consistency": ec, "effect_ratio": ratio}


def format_report(result: Mapping[str, Any]) -> str:
    """A plain-text table of an ``analyze_ratings`` result."""
    lines = [f"workers: {result['n_workers']}, qualified: {result['n_qualified']}"]
    for w, d in result["workers"].items():
        if "rho_accuracy" in d:
            lines.append(f"  {w:<16} rho_acc {d['rho_accuracy']:+.3f}  rho_cons {d['rho_consistency']:+.3f}  "
                         f"{'kept' if d['qualified'] else 'DROPPED'} ({d['reason']})")
    lines.append(f"study videos: {result['n_study_videos']}, mean rating {result['mean_rating']:.3f}, "
                 f"mean per-video std {result['mean_std']:.3f}")
    ag = result["agreement"]
    lines.append(f"agreement: mean pairwise Spearman {ag['mean_pairwise_spearman']:.3f} over {ag['n_pairs']} pairs")
    low = result["low_agreement"]
    lines.append(f"{'measure':<16}{'rho':>9}{'p':>11}{'n':>5}   | std <= {low['threshold']:g}: "
                 f"{'rho':>7}{'p':>11}{'n':>5}")
    for name, c in result["correlations"].items():
        k = low["correlations"][name]
        lines.append(f"{name:<16}{c['rho']:>+9.3f}{c['p']:>11.2e}{c['n']:>5}   |             "
                     f"{k['rho']:>+7.3f}{k['p']:>11.2e}{k['n']:>5}")
    if "qualification_check" in result:
        lines.append("measures on the qualification grid (Spearman with the corruption level):")
        for name, c in result["qualification_check"].items():
            lines.append(f"  {name:<14} accuracy {c['rho_accuracy']:+.3f}  consistency {c['rho_consistency']:+.3f}"
                         f"  (n={c['n']})")
    return "\n".join(lines)
