"""`steadyseg postprocess wgf|gauss`: formats round-trip, flicker removal, config record, errors, real data."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import yaml
from PIL import Image

from steadyseg.refine.postprocess import cli as postprocess_cli
from steadyseg.refine.postprocess.video_filter import filter_probabilities

T, H, W = 7, 24, 32
FLICKER = 3  # the frame whose mask flickers


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="steadyseg postprocess")
    postprocess_cli.add_arguments(p)
    return p


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def _true_flow(p: int, q: int) -> np.ndarray:
    """Flow p → q of the synthetic scene, (H, W, 2) float32 (dx, dy) in pixels: the square moves q - p px right."""
    flow = np.zeros((H, W, 2), np.float32)
    flow[6:18, 6 + p:18 + p, 0] = q - p
    return flow


def _scene(rng):
    """A square moving right by 1 px per frame on a textured background; masks = the square, one flickers."""
    frames, masks = [], []
    for t in range(T):
        img = (rng.random((H, W, 3)) * 60 + 40).astype(np.uint8)
        m = np.zeros((H, W), np.uint8)
        m[6:18, 6 + t:18 + t] = 1
        img[m == 1] = (220, 60, 40)
        frames.append(img)
        mm = m.copy()
        if t == FLICKER:
            mm[2:5, 22:30] = 1  # a spurious blob on one frame only
        masks.append(mm)
    return frames, masks


@pytest.fixture()
def scene(tmp_path):
    rng = np.random.default_rng(0)
    frames, masks = _scene(rng)
    fdir = tmp_path / "frames"
    fdir.mkdir()
    for t, f in enumerate(frames):
        Image.fromarray(f).save(fdir / f"{t:05d}.png")
    return tmp_path, fdir, masks


def test_wgf_davis_binary_format_removes_flicker(scene):
    tmp, fdir, masks = scene
    mdir = tmp / "masks"
    mdir.mkdir()
    for t, m in enumerate(masks):
        Image.fromarray(m * 255, mode="L").save(mdir / f"{t:05d}.png")
    out = tmp / "out"
    assert _run(["wgf", "--frames", str(fdir), "--masks", str(mdir), "--out", str(out), "--radius", "2",
                 "--temporal-radius", "1", "--eps", "0.01", "--no-progress"]) == 0
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == [f"{t:05d}.png" for t in range(T)]
    res = [np.array(Image.open(out / f)) for f in files]
    assert all(Image.open(out / f).mode == "L" for f in files)
    assert set(np.unique(np.stack(res)).tolist()) <= {0, 255}
    assert res[FLICKER][2:5, 22:30].max() == 0  # the one-frame blob is gone
    truth = masks[FLICKER].copy()
    truth[2:5, 22:30] = 0
    inter = ((res[FLICKER] == 255) & (truth == 1)).sum()
    union = ((res[FLICKER] == 255) | (truth == 1)).sum()
    assert inter / union > 0.8  # the object is kept
    # The filter makes the video more consistent: the raw flow inconsistency (true flow of the scene) falls.
    from steadyseg.measures import inconsistency

    e_in = inconsistency([m.astype(np.int32) for m in masks], _true_flow, window=2).e_raw
    e_out = inconsistency([(r == 255).astype(np.int32) for r in res], _true_flow, window=2).e_raw
    assert e_out < 0.5 * e_in, (e_in, e_out)
    cfg = yaml.safe_load((out / "config.yaml").read_text())["config"]
    assert cfg["method"] == "wgf" and cfg["params"]["radius"] == 2 and cfg["params"]["temporal_radius"] == 1
    assert cfg["params"]["eps"] == 0.01 and cfg["params"]["guide"] == "color" and cfg["reading"] == "davis2016-binary"


def test_strength_presets_resolve_and_flags_override(scene):
    """--strength picks a preset of the measured front; explicit flags win; the config records what ran."""
    from steadyseg.refine.postprocess.video_filter import (DEFAULT_STRENGTH, WGF_DEFAULTS, WGF_PRESETS,
                                                           resolve_params)

    assert set(WGF_PRESETS) == {"light", "medium", "strong"}
    for key, value in WGF_PRESETS[DEFAULT_STRENGTH].items():  # the defaults are the default preset
        assert WGF_DEFAULTS[key] == value
    assert resolve_params("wgf", {})["strength"] == DEFAULT_STRENGTH
    strong = resolve_params("wgf", {"strength": "strong", "eps": 0.05, "radius": None})
    assert strong["eps"] == 0.05 and strong["radius"] == WGF_PRESETS["strong"]["radius"]
    with pytest.raises(ValueError, match="unknown wgf strength"):
        resolve_params("wgf", {"strength": "extreme"})
    with pytest.raises(ValueError, match="unknown gauss parameter"):
        resolve_params("gauss", {"strength": "light"})
    tmp, fdir, masks = scene
    mdir = tmp / "masks-s"
    mdir.mkdir()
    for t, m in enumerate(masks):
        Image.fromarray(m * 255, mode="L").save(mdir / f"{t:05d}.png")
    outs = {}
    for name, extra in [("light", ["--strength", "light"]), ("light-r1", ["--strength", "light", "--radius", "1"])]:
        out = tmp / f"out-{name}"
        assert _run(["wgf", "--frames", str(fdir), "--masks", str(mdir), "--out", str(out), "--no-progress"]
                    + extra) == 0
        outs[name] = yaml.safe_load((out / "config.yaml").read_text())["config"]["params"]
    assert outs["light"] == {**WGF_DEFAULTS, **WGF_PRESETS["light"], "strength": "light"}
    assert outs["light-r1"]["radius"] == 1 and outs["light-r1"]["temporal_radius"] == \
        WGF_PRESETS["light"]["temporal_radius"]
    with pytest.raises(SystemExit):  # argparse refuses a name that is not a preset
        _parser().parse_args(["wgf", "--frames", str(fdir), "--masks", str(mdir), "--out", str(tmp / "x"),
                              "--strength", "extreme"])


def test_wgf_palette_keeps_palette_and_void(scene):
    tmp, fdir, masks = scene
    mdir = tmp / "pal"
    mdir.mkdir()
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [7] * (256 * 3 - 9)
    for t, m in enumerate(masks):
        m = m.copy()
        m[0, 0] = 255  # void pixel
        im = Image.fromarray(m, mode="P")
        im.putpalette(palette)
        im.save(mdir / f"{t:05d}.png")
    out = tmp / "out"
    assert _run(["wgf", "--frames", str(fdir), "--masks", str(mdir), "--out", str(out), "--no-progress"]) == 0
    im = Image.open(out / "00002.png")
    assert im.mode == "P" and im.getpalette()[:len(palette)] == palette
    arr = np.array(im)
    assert arr[0, 0] == 255 and set(np.unique(arr).tolist()) <= {0, 1, 255}


def test_wgf_and_gauss_on_probabilities(scene):
    tmp, fdir, masks = scene
    pdir = tmp / "probs"
    pdir.mkdir()
    rng = np.random.default_rng(1)
    for t, m in enumerate(masks):
        fg = np.clip(m * 0.8 + 0.1 + rng.normal(0, 0.05, m.shape), 0, 1).astype(np.float32)
        np.save(pdir / f"{t:05d}.npy", np.stack([1 - fg, fg]))
    for method, extra in [("wgf", ["--frames", str(fdir), "--radius", "2", "--temporal-radius", "1"]),
                          ("gauss", ["--sigma", "1.0"])]:
        out = tmp / f"out-{method}"
        assert _run([method, "--probs", str(pdir), "--out", str(out), "--no-progress"] + extra) == 0
        q = np.stack([np.load(out / f"{t:05d}.npy") for t in range(T)])
        assert q.shape == (T, 2, H, W) and q.dtype == np.float32
        np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
        assert q.min() >= 0 and q.max() <= 1
        assert (q[FLICKER, 1, 2:5, 22:30] < 0.5).all()  # flicker voted away in time
        cfg = yaml.safe_load((out / "config.yaml").read_text())["config"]
        assert cfg["method"] == method and cfg["reading"] == "soft-probs"


def test_gauss_matches_library(scene):
    from steadyseg.refine.postprocess.temporal_smoothing import temporal_gaussian

    tmp, fdir, masks = scene
    mdir = tmp / "lab"
    mdir.mkdir()
    for t, m in enumerate(masks):
        Image.fromarray((m * 2).astype(np.uint8), mode="L").save(mdir / f"{t:05d}.png")  # labels {0, 2}
    out = tmp / "out"
    assert _run(["gauss", "--masks", str(mdir), "--out", str(out), "--sigma", "2", "--no-progress"]) == 0
    onehot = np.stack([np.stack([(m * 2) == c for c in range(3)]) for m in masks]).astype(np.float32)
    expected = np.argmax(temporal_gaussian(onehot, 2.0), axis=1)
    got = np.stack([np.array(Image.open(out / f"{t:05d}.png")) for t in range(T)])
    np.testing.assert_array_equal(got, expected)


def test_errors(scene, tmp_path):
    tmp, fdir, masks = scene
    with pytest.raises(SystemExit):  # --frames is required for wgf
        _parser().parse_args(["wgf", "--masks", str(tmp), "--out", str(tmp / "o")])
    with pytest.raises(FileNotFoundError, match="nope"):
        _run(["gauss", "--masks", str(tmp / "nope"), "--out", str(tmp / "o"), "--no-progress"])
    with pytest.raises(ValueError, match="choose a method"):
        _run([])
    with pytest.raises(ValueError, match="unknown wgf parameter"):
        list(filter_probabilities(iter([]), method="wgf", frames=[], sigma=1.0))


def test_through_console_script(scene, capsys):
    from steadyseg.cli import SUBCOMMANDS
    from steadyseg.cli import main as cli_main

    assert SUBCOMMANDS["postprocess"][0] == "steadyseg.refine.postprocess.cli"
    tmp, fdir, masks = scene
    mdir = tmp / "m"
    mdir.mkdir()
    for t, m in enumerate(masks):
        Image.fromarray(m * 255, mode="L").save(mdir / f"{t:05d}.png")
    out = tmp / "o"
    assert cli_main(["postprocess", "gauss", "--frames", str(fdir), "--masks", str(mdir), "--out", str(out),
                     "--sigma", "1", "--no-progress"]) == 0
    assert len(list(out.glob("*.png"))) == T
    assert cli_main(["postprocess"]) == 1  # no method: a clear error, no traceback
    assert "choose a method" in capsys.readouterr().err


def test_real_osvos_short_clip(davis2016, davis_osvos, tmp_path):
    """5 frames of a real sequence: the 3D filter runs at full size and keeps the accuracy."""
    from steadyseg.datasets.masks import open_masks

    seq = "blackswan"
    frames = tmp_path / "frames"
    masks = tmp_path / "masks"
    frames.mkdir()
    masks.mkdir()
    for t in range(5):  # links, not copies, of the shared data
        (frames / f"{t:05d}.jpg").symlink_to(davis2016 / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg")
        (masks / f"{t:05d}.png").symlink_to(davis_osvos / seq / f"{t:05d}.png")
    out = tmp_path / "out"
    assert _run(["wgf", "--frames", str(frames), "--masks", str(masks), "--out", str(out), "--binary",
                 "--no-progress"]) == 0
    gt = open_masks(davis2016 / "Annotations" / "480p" / seq, binary=True)
    raw = open_masks(masks, binary=True)
    res = open_masks(out, binary=True)
    assert len(res) == 5 and res.reading == "palette-ids"

    def iou(a, b):
        return ((a == 1) & (b == 1)).sum() / ((a == 1) | (b == 1)).sum()

    raw_iou = np.mean([iou(raw[t], gt[t]) for t in range(5)])
    res_iou = np.mean([iou(res[t], gt[t]) for t in range(5)])
    assert res_iou > raw_iou - 0.01
