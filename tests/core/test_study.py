"""Tests of the user-study protocol tool (``steadyseg.study`` package): corruptions, grid, rating analysis, CLI, real
data."""

from __future__ import annotations

import csv
import json
import math

import cv2
import numpy as np
import pytest

from steadyseg import study
from steadyseg.study import cli as study_cli


def cli_main(argv):
    """Run ``steadyseg study ...`` as ``steadyseg.cli`` does (parser, func, errors → 1) on this module alone."""
    import argparse

    parser = argparse.ArgumentParser(prog="steadyseg")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("study")
    study_cli.add_arguments(p)
    p.set_defaults(func=study_cli.main)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError):
        return 1


def _square(h=64, w=80, top=16, left=20, size=30, label=1):
    m = np.zeros((h, w), np.int32)
    m[top:top + size, left:left + size] = label
    return m


# ---------------------------------------------------------------------------------------------------- erosion
@pytest.mark.parametrize("n", [1, 5, 10])
def test_erosion_right_removes_n_columns_on_the_right_only(n):
    m = _square()
    out = study.erode_directional(m, n, (1.0, 0.0))
    expected = m.copy()
    expected[16:46, 50 - n:50] = 0
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == m.dtype


@pytest.mark.parametrize("direction,removed", [((0, -1), "top"), ((-1, 0), "left"), ((0, 3), "bottom")])
def test_erosion_direction_picks_the_side(direction, removed):
    m = _square()
    out = study.erode_directional(m, 7, direction)
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    bounds = {"top": (23, 45, 20, 49), "left": (16, 45, 27, 49), "bottom": (16, 38, 20, 49)}[removed]
    assert (rows[0], rows[-1], cols[0], cols[-1]) == bounds
    assert out.sum() == 30 * 23  # exactly 7 lines of 30 px removed


def test_erosion_diagonal_moves_the_facing_corner_only():
    m = _square()
    d = (1 / math.sqrt(2), 1 / math.sqrt(2))
    out = study.erode_directional(m, 10, d)
    # the far (bottom-right) sides move in by round(10/sqrt 2) = 7 px, the top-left sides stay.
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert (rows[0], cols[0]) == (16, 20)
    assert (rows[-1], cols[-1]) == (45 - 7, 49 - 7)
    assert out.sum() == 23 * 23


def test_erosion_keeps_void_and_other_labels_and_border_objects():
    m = _square()
    m[0:5, :] = 255  # void band
    m[40:64, 60:80] = 2  # a second object touching the image border at the right/bottom
    out = study.erode_directional(m, 4, (1, 0))
    assert np.all(out[0:5] == 255)
    # object 2 touches the right border: outside counts as inside, so it is not cut there
    np.testing.assert_array_equal(out[40:64, 60:80], 2)
    assert np.count_nonzero(out == 1) == 30 * 26
    assert study.erode_directional(m, 0, (0, 1)).tolist() == m.tolist()


def test_erosion_errors():
    with pytest.raises(ValueError, match="non-zero"):
        study.erode_directional(_square(), 3, (0, 0))
    with pytest.raises(ValueError, match=">= 0"):
        study.erode_directional(_square(), -1, (1, 0))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        study.erode_directional(np.zeros((2, 3, 4), np.int32), 1, (1, 0))


# ---------------------------------------------------------------------------------------------- displacement
def test_displacement_zero_is_identity_and_advances_rng_the_same():
    m = _square(label=3)
    r0, r1 = np.random.default_rng(5), np.random.default_rng(5)
    out = study.piecewise_affine_displacement(m, 0, r0)
    np.testing.assert_array_equal(out, m)
    study.piecewise_affine_displacement(m, 4, r1)
    assert r0.uniform() == r1.uniform()


def test_one_lattice_reused_gives_the_fields_of_fresh_ones():
    """make_grid builds one DisplacementLattice and reuses it (explicit; no hidden cache): same fields as building
    one per frame, and a lattice of another size is refused."""
    lattice = study.DisplacementLattice(40, 50, (2, 3))
    assert lattice.index.shape == (40 * 50, 3) and not lattice.weights.flags.writeable
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(3):
        np.testing.assert_array_equal(lattice.field(4.0, a), study.displacement_field(40, 50, 4.0, b, grid=(2, 3)))
    m = _square(h=40, w=50, top=10, left=10, size=20)
    a, b = np.random.default_rng(6), np.random.default_rng(6)
    np.testing.assert_array_equal(study.piecewise_affine_displacement(m, 3.0, a, lattice=lattice),
                                  study.piecewise_affine_displacement(m, 3.0, b, grid=(2, 3)))
    with pytest.raises(ValueError, match="lattice is for 30x50"):
        study.piecewise_affine_displacement(m, 3.0, a, lattice=study.DisplacementLattice(30, 50, 2))


def test_displacement_field_is_piecewise_affine_bounded_and_continuous():
    rng = np.random.default_rng(0)
    f = study.displacement_field(120, 160, 6.0, rng, grid=(3, 4))
    assert f.shape == (120, 160, 2) and f.dtype == np.float32
    mag = np.linalg.norm(f, axis=-1)
    assert mag.max() <= 6.0 + 1e-4 and mag.max() > 5.5  # = magnitude at the control points
    # continuous: neighbouring pixels differ by at most the steepest triangle slope (2·m per cell side)
    assert np.abs(np.diff(f, axis=0)).max() <= 2 * 6.0 / (120 / 3) + 1e-4
    assert np.abs(np.diff(f, axis=1)).max() <= 2 * 6.0 / (160 / 4) + 1e-4
    # affine inside a triangle: second differences vanish away from the triangle edges
    cell = f[2:14, 2:14]  # lower-left part of the first cell (u + v < 1), far from its diagonal
    np.testing.assert_allclose(np.diff(cell, n=2, axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.diff(cell, n=2, axis=1), 0, atol=1e-4)


def test_displacement_moves_the_boundary_by_at_most_the_magnitude():
    m = _square(h=96, w=96, top=30, left=30, size=36)
    out = study.piecewise_affine_displacement(m, 4, np.random.default_rng(1), grid=2)
    changed = out != m
    assert changed.any()
    # distance of every pixel to the nearest pixel of the other label (one of the two terms is 0)
    dist_to_edge = (cv2.distanceTransform((m == 0).astype(np.uint8), cv2.DIST_L2, 5)
                    + cv2.distanceTransform((m == 1).astype(np.uint8), cv2.DIST_L2, 5))
    assert dist_to_edge[changed].max() <= 4.5
    assert set(np.unique(out)) <= {0, 1}


# ---------------------------------------------------------------------------------------------------- grid
def test_make_grid_structure_and_seeds():
    masks = [_square(top=16 + t, left=20 + 2 * t) for t in range(4)]
    g = study.make_grid(masks, seed=3)
    assert sorted(g) == [(i, j) for i in range(3) for j in range(3)]
    for seq in g.values():
        assert len(seq) == 4 and all(m.shape == (64, 80) for m in seq)
    for t in range(4):
        np.testing.assert_array_equal(g[(0, 0)][t], masks[t])  # clean cell = input
        a0, a1, a2 = (g[(i, 0)][t] == 1 for i in range(3))
        assert a2.sum() < a1.sum() < a0.sum() and not (a2 & ~a1).any() and not (a1 & ~a0).any()  # nested
        assert not np.array_equal(g[(0, 2)][t], masks[t])
    g2 = study.make_grid(masks, seed=3)
    g3 = study.make_grid(masks, seed=4)
    assert all(np.array_equal(a, b) for c in g for a, b in zip(g[c], g2[c]))
    assert any(not np.array_equal(a, b) for c in g for a, b in zip(g[c], g3[c]))
    # the displacement is drawn independently per frame: identical input frames come out different
    same = study.make_grid([_square()] * 3, seed=3, erosion_levels=(0,), displacement_levels=(0, 4))
    assert not np.array_equal(same[(0, 1)][0], same[(0, 1)][1])
    assert not np.array_equal(same[(0, 1)][1], same[(0, 1)][2])
    with pytest.raises(ValueError, match="one shape"):
        study.make_grid([_square(), _square(h=50)])


# -------------------------------------------------------------------------------------------------- analysis
def _synthetic_study(seed=0):
    """9 qualification videos, 12 study videos with a measure; 4 good workers, 1 accuracy follower, 1 constant."""
    rng = np.random.default_rng(seed)
    grid = {f"q/acc{i}_cons{j}": (i, j) for i in range(3) for j in range(3)}
    measure = {f"v{k:02d}": float(k) for k in range(12)}  # inconsistency grows with k
    rows = []
    for w in ["good1", "good2", "good3", "good4", "acc_follower", "constant"]:
        for v, (i, j) in grid.items():
            if w.startswith("good"):
                r = 5 - 2 * j
            elif w == "acc_follower":
                r = 5 - 2 * i
            else:
                r = 3
            rows.append({"video": v, "worker": w, "rating": r})
        for v, x in measure.items():
            if w.startswith("good"):
                r = 5 - int(x) // 3  # 5,5,5,4,4,4,... : perfect agreement, monotone in the measure
                if v == "v11":
                    r = [1, 5, 1, 5][int(w[-1]) - 1]  # a low-agreement video
            elif w == "acc_follower":
                r = int(rng.integers(1, 6))
            else:
                r = 3
            rows.append({"video": v, "worker": w, "rating": r})
    return rows, {v: {"E_cons": x, "noise": float(rng.normal())} for v, x in measure.items()}, grid


def test_analyze_drops_the_accuracy_follower_and_knows_the_answer():
    rows, measures, grid = _synthetic_study()
    res = study.analyze_ratings(rows, measures, grid)
    w = res["workers"]
    assert not w["acc_follower"]["qualified"] and "accuracy" in w["acc_follower"]["reason"]
    assert not w["constant"]["qualified"]
    assert all(w[f"good{k}"]["qualified"] and w[f"good{k}"]["sign_ok"] for k in range(1, 5))
    # ratings 5 - 2·level: the same three tied groups on both sides, a perfect negative rank correlation
    assert w["good1"]["rho_consistency"] == pytest.approx(-1.0) and w["good1"]["rho_accuracy"] == pytest.approx(0.0)
    assert w["acc_follower"]["rho_accuracy"] == pytest.approx(-1.0)
    assert w["acc_follower"]["rho_consistency"] == pytest.approx(0.0)
    assert res["n_qualified"] == 4 and res["n_study_videos"] == 12
    # v11 is the only video on which the good workers disagree: mean 3, std 2 > 1 -> removed
    assert res["videos"]["v11"]["mean"] == 3.0 and res["videos"]["v11"]["std"] == 2.0
    assert res["low_agreement"]["removed"] == ["v11"]
    # mean ratings over v00..v11: 5,5,5,4,4,4,3,3,3,2,2,3 against E_cons 0..11. Spearman = Pearson of the ranks:
    # rating ranks (ties averaged) 11,11,11,8,8,8,4.5,4.5,4.5,1.5,1.5,4.5: centred cross product -127.5, sums of
    # squares 133.5 (ratings) and 143 (0..11)
    assert res["correlations"]["E_cons"]["rho"] == pytest.approx(-127.5 / math.sqrt(133.5 * 143), abs=1e-9)
    # without v11: ranks 10,10,10,7,7,7,4,4,4,1.5,1.5 vs 0..10: cross product -103.5, squares 103.5 and 110
    assert res["low_agreement"]["correlations"]["E_cons"]["rho"] == pytest.approx(-math.sqrt(103.5 / 110), abs=1e-9)
    assert res["correlations"]["E_cons"]["n"] == 12 and res["low_agreement"]["correlations"]["E_cons"]["n"] == 11
    # agreement over the 12 study videos: (good1, good3) and (good2, good4) agree everywhere (rho = 1); the 4 other
    # pairs differ only on v11 (1 vs 5)
    from scipy.stats import spearmanr

    base = [5, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2]
    rho_diff = spearmanr(base + [1], base + [5]).statistic
    assert res["agreement"]["n_pairs"] == 6
    assert res["agreement"]["mean_pairwise_spearman"] == pytest.approx((2 * 1.0 + 4 * rho_diff) / 6, abs=1e-12)
    json.dumps(res)  # serialisable
    assert "acc_follower" in study.format_report(res)


def test_analyze_without_grid_keeps_everyone_and_accepts_column_dicts():
    cols = {"video": ["a", "b", "c", "a", "b", "c"], "worker": ["x"] * 3 + ["y"] * 3, "rating": [1, 3, 5, 2, 3, 4]}
    res = study.analyze_ratings(cols, {"a": {"m": 3.0}, "b": {"m": 2.0}, "c": {"m": 1.0}})
    assert res["n_qualified"] == 2
    assert res["correlations"]["m"]["rho"] == pytest.approx(-1.0)
    assert res["agreement"]["mean_pairwise_spearman"] == pytest.approx(1.0)
    assert res["videos"]["a"]["mean"] == 1.5


def test_analyze_rejects_bad_input():
    with pytest.raises(ValueError, match="Likert"):
        study.analyze_ratings([("a", "w", 7)])
    with pytest.raises(ValueError, match="missing column"):
        study.analyze_ratings([{"video": "a", "rating": 3}])
    with pytest.raises(ValueError, match="more than once"):
        study.analyze_ratings([("a", "w", 3), ("a", "w", 4)])


def test_grid_axis_correlations_of_a_perfect_consistency_measure():
    c = study.grid_axis_correlations({(i, j): j + 0.01 * (i == 1) for i in range(3) for j in range(3)})
    assert c["rho_consistency"] > 0.949 and c["rho_accuracy"] == pytest.approx(0.0, abs=1e-12)
    assert c["effect_consistency"] == pytest.approx(2.0) and c["effect_accuracy"] == pytest.approx(0.0)
    # a tiny monotone accuracy effect already gives the largest possible |rho| (sqrt 0.1); the ratio shows its size
    c = study.grid_axis_correlations({(i, j): j + 0.01 * i for i in range(3) for j in range(3)})
    assert c["rho_accuracy"] == pytest.approx(math.sqrt(0.1), abs=1e-12)
    assert c["rho_consistency"] == pytest.approx(math.sqrt(0.9), abs=1e-12)  # 9 distinct values, 3 tied levels
    assert c["effect_accuracy"] == pytest.approx(0.02) and c["effect_ratio"] == pytest.approx(0.01)


# ------------------------------------------------------------------------------------------------------- CLI
def test_cli_make_grid_and_analyze(tmp_path):
    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for t in range(5):
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), rng.integers(0, 255, (60, 90, 3), dtype=np.uint8))
        m = np.zeros((60, 90), np.uint8)
        cv2.circle(m, (40 + t, 30), 18, 255, -1)
        cv2.imwrite(str(masks / f"{t:05d}.png"), m)
    out = tmp_path / "grid"
    rc = cli_main(["study", "make-grid", "--frames", str(frames), "--masks", str(masks), "--out", str(out),
                   "--seed", "2", "--max-frames", "4", "--erosion-levels", "0", "3", "6"])
    assert rc == 0
    grid = json.loads((out / "grid.json").read_text())
    assert grid["seed"] == 2 and grid["n_frames"] == 4 and grid["erosion_levels"] == [0, 3, 6]
    assert len(grid["videos"]) == 9 and grid["videos"]["masks/acc1_cons2"]["consistency_level"] == 2
    assert math.hypot(*grid["erosion_direction"]) == pytest.approx(1.0)
    assert tuple(grid["erosion_direction"]) == pytest.approx(study.erosion_direction(2))
    assert (out / "config.yaml").is_file()
    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and preview.shape[0] > 0
    files = sorted((out / "acc2_cons1").glob("*.png"))
    assert [f.name for f in files] == [f"{t:05d}.png" for t in range(4)]
    written = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(written)) == {0, 255}  # same format as the input (DAVIS {0,255})
    clean = cv2.imread(str(out / "acc0_cons0" / "00003.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(clean, cv2.imread(str(masks / "00003.png"), cv2.IMREAD_UNCHANGED))

    # the library call behind the command, with the measures of every cell: one normaliser, the clean masks'
    write = study.write_grid(frames, masks, tmp_path / "measured", seed=2, max_frames=4, erosion_levels=(0, 3, 6),
                             measure=True, flow_cache=tmp_path / "flow", progress=False)
    assert {k: v for k, v in write.items() if k not in ("measures", "measures_axes", "videos")} == \
        {**{k: v for k, v in grid.items() if k != "videos"}, "masks": str(masks), "frames": str(frames)}
    lines = (tmp_path / "measured" / "measures.csv").read_text().splitlines()
    assert lines[0] == "video,E_cons,E_raw,E_smooth" and len(lines) == 10
    assert write["measures"]["acc0_cons0"]["E_raw"] < write["measures"]["acc0_cons2"]["E_raw"]
    axes = json.loads((tmp_path / "measured" / "measures_axes.json").read_text())
    assert set(axes) == set(write["measures_axes"]) == {"E_cons", "E_raw", "E_smooth"}
    assert "preset: fast" in (tmp_path / "measured" / "config.yaml").read_text()  # the measure's default
    # another DIS preset for the flow (how a flow setting is checked): recorded, and other flows give other values
    fast = study.write_grid(frames, masks, tmp_path / "fast", seed=2, max_frames=4, erosion_levels=(0, 3, 6),
                            measure=True, preset="ultrafast", progress=False)
    assert "preset: ultrafast" in (tmp_path / "fast" / "config.yaml").read_text()
    assert fast["measures"] != write["measures"]

    # analyze: ratings CSV + measures CSV + the grid
    rows, measures, _ = _synthetic_study()
    rename = {f"q/acc{i}_cons{j}": f"masks/acc{i}_cons{j}" for i in range(3) for j in range(3)}
    with open(tmp_path / "ratings.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, ["video", "worker", "rating"])
        wr.writeheader()
        for r in rows:
            wr.writerow({**r, "video": rename.get(r["video"], r["video"])})
    with open(tmp_path / "measures.csv", "w", newline="") as f:
        f.write("video,E_cons\n" + "".join(f"{v},{m['E_cons']}\n" for v, m in measures.items()))
    rc = cli_main(["study", "analyze", "--ratings", str(tmp_path / "ratings.csv"), "--measures",
                   str(tmp_path / "measures.csv"), "--grid", str(out / "grid.json"), "--json",
                   str(tmp_path / "res" / "analysis.json")])
    assert rc == 0
    res = json.loads((tmp_path / "res" / "analysis.json").read_text())
    assert res["n_qualified"] == 4 and not res["workers"]["acc_follower"]["qualified"]
    assert (tmp_path / "res" / "analysis.config.yaml").is_file()

    # errors name the file
    (tmp_path / "bad.csv").write_text("video,rating\na,3\n")
    assert cli_main(["study", "analyze", "--ratings", str(tmp_path / "bad.csv"), "--measures",
                     str(tmp_path / "measures.csv")]) == 1
    with pytest.raises(ValueError, match="bad.csv"):
        study.read_ratings_csv(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="nope"):
        study.read_measures(tmp_path / "nope.json")


# -------------------------------------------------------------------------------------------- real data (DAVIS)
@pytest.mark.parametrize("sequence,n_frames", [("blackswan", 14), ("camel", 14)])
def test_cons_measure_follows_the_consistency_axis_on_davis(davis2016, sequence, n_frames):
    """On the grid made from DAVIS ground truth (half resolution, paper levels 0/10/20 px erosion, 0/4/8 px
    displacement), E_cons follows the consistency axis and ignores the accuracy axis. All nine videos share the
    frames, the flows and one normaliser: the clean ground truth's median boundary."""
    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.video import open_video
    from steadyseg.measures import inconsistency

    video = open_video(davis2016 / "JPEGImages" / "480p" / sequence, max_frames=n_frames)
    gt = open_masks(davis2016 / "Annotations" / "480p" / sequence)
    half = lambda a, interp: cv2.resize(a, None, fx=0.5, fy=0.5, interpolation=interp)  # noqa: E731
    frames = [half(video[t], cv2.INTER_AREA) for t in range(n_frames)]  # a list: FlowProvider reads .size of arrays
    masks = np.stack([half(gt[t].astype(np.uint8), cv2.INTER_NEAREST) for t in range(n_frames)]).astype(np.int32)
    grid = study.make_grid(masks, seed=0)
    flows = FlowProvider(frames, backend="dis", memory_items=512)  # every flow computed once for 9 videos
    e = {cell: inconsistency(np.stack(seq), flows, window=3, normalizer=masks).e_cons for cell, seq in grid.items()}
    c = study.grid_axis_correlations(e)
    assert c["rho_consistency"] >= 0.8, (sequence, e)
    assert abs(c["rho_accuracy"]) <= 0.3, (sequence, e)
    # and the accuracy effect is small next to the consistency effect (Spearman alone saturates, see the API)
    assert abs(c["effect_ratio"]) <= 0.25, (sequence, c, e)
    # and monotone along the consistency axis at every accuracy level
    for i in range(3):
        assert e[(i, 0)] < e[(i, 1)] < e[(i, 2)], (sequence, i, e)


def test_registered_in_the_steadyseg_cli(tmp_path, capsys):
    from steadyseg.cli import main as steadyseg_main

    assert steadyseg_main(["study"]) == 1  # no study command: a clear error, not a traceback
    assert "make-grid or analyze" in capsys.readouterr().err
    assert steadyseg_main(["study", "analyze", "--ratings", str(tmp_path / "none.csv"), "--measures", "x.csv"]) == 1
    assert "none.csv" in capsys.readouterr().err
