"""Video flicker dataset on a synthetic flickering video; clear errors when the curation extra is missing."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest


def test_flicker_dataset_matches_the_measure(fo_env, dataset_name, tmp_path):
    from steadyseg.curation.video import build_flicker_dataset
    from steadyseg.datasets.flow import FlowProvider
    from steadyseg.datasets.masks import open_masks
    from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
    from steadyseg.datasets.video import open_video
    from steadyseg.measures import flicker_map, inconsistency

    video = make_moving_shapes_video(num_frames=8, height=64, width=80, flicker_px=3, seed=3)
    paths = write_video_folder(video, tmp_path / "vid")
    ds = build_flicker_dataset(paths["frames"], paths["predictions"], dataset_name, tmp_path / "out", window=2,
                               progress=False, video_sample=False)
    assert len(ds) == 8 and set(ds.list_saved_views()) == {"clip_in_order", "flicker_worst", "flicker_spikes"}
    assert ds.load_saved_view("clip_in_order").values("frame_index") == list(range(8))
    # the App opens with the overlays on (not plain frames): masks blue, flicker regions red, the map amber
    # (opacity = value; the "hot" scale applies when the App colours by value)
    from steadyseg.curation.appearance import FLICKER_COLOR, HEAT_COLOR, MASK_COLOR

    assert ds.app_config.active_fields.paths == ["masks", "flicker_map", "flicker_regions"]
    colors = {f["path"]: f["fieldColor"] for f in ds.app_config.color_scheme.fields}
    assert colors == {"masks": MASK_COLOR, "flicker_map": HEAT_COLOR, "flicker_regions": FLICKER_COLOR}
    assert ds.app_config.color_scheme.colorscales[0]["name"] == "hot"
    timeline = tmp_path / "out" / "inconsistency_timeline.png"
    assert ds.info["steadyseg_video"]["timeline_plot"] == str(timeline.resolve()) and timeline.stat().st_size > 5000
    frames = open_video(paths["frames"])
    labels = [np.asarray(m) for m in open_masks(paths["predictions"])]
    flows = FlowProvider(frames, cache_dir=tmp_path / "flow2")
    ref = inconsistency(labels, flows, window=2)
    got = ds.sort_by("frame_index").values("inconsistency")
    assert np.allclose(got, ref.per_frame, equal_nan=True)
    worst = ds.load_saved_view("flicker_worst").values("inconsistency")
    assert worst == sorted(worst, reverse=True) and worst[0] == pytest.approx(np.nanmax(ref.per_frame))
    s = ds.match({"frame_index": 4}).first()
    fmap = flicker_map(labels, flows, 4, window=2)
    assert s.flicker_map.map.shape == (64, 80)
    assert np.array_equal(s.flicker_regions.mask, (fmap >= 0.5).astype(np.uint8))
    assert s.flicker_regions.mask.any(), "the synthetic flicker must show up as flicker regions"
    assert ds.info["steadyseg_video"]["e_raw"] == pytest.approx(ref.e_raw)
    assert (tmp_path / "out" / "curate_video.config.yaml").is_file()
    assert ds.info["steadyseg_video"]["video_dataset"] is None and not (tmp_path / "out" / "clip.mp4").exists()
    # a frame folder's own images are the samples' media (no re-encoded copy under out/frames)
    assert ds.sort_by("frame_index").values("filepath") == [str(p.resolve()) for p in
                                                            sorted(paths["frames"].glob("*.png"))]
    assert not (tmp_path / "out" / "frames").exists()
    with pytest.raises(ValueError, match="exists; pass overwrite"):
        build_flicker_dataset(paths["frames"], paths["predictions"], dataset_name, tmp_path / "out", progress=False)


def test_missing_fiftyone_gives_a_clear_error(monkeypatch):
    from steadyseg.curation import env

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "fiftyone" else real(n, *a))
    monkeypatch.delitem(sys.modules, "fiftyone", raising=False)
    with pytest.raises(env.CurationExtraMissing, match=r"pip install 'steadyseg\[curation\]'"):
        env.require_fiftyone()
    from steadyseg.cli import main

    with pytest.raises(SystemExit, match="curation"):
        main(["curate", "export", "anything", "--out", "x.json"])


def test_environment_is_configured_before_import(fo_env, monkeypatch):
    from steadyseg.curation.env import configure_environment

    monkeypatch.setenv("FIFTYONE_DATABASE_NAME", "kept")
    with pytest.raises(RuntimeError, match="already imported"):
        configure_environment(database_name="another")
    assert configure_environment()["FIFTYONE_DO_NOT_TRACK"] == "true"
