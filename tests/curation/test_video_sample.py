"""The clip as one FiftyOne video sample: the encoded MP4 (read back with imageio-ffmpeg's ffmpeg), the metadata we
write instead of ffprobe, and the frame labels of the video dataset next to the frame dataset."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest


def _frames(t: int, height: int, width: int) -> list[np.ndarray]:
    """``t`` smooth RGB frames, each clearly different from its neighbours (a bright square moving 4 px/frame)."""
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for k in range(t):
        f = np.stack([(xx * 3) % 256, (yy * 5) % 256, np.full_like(xx, 40 + 8 * k)], axis=-1).astype(np.uint8)
        f[4:16, 4 + 4 * k:16 + 4 * k] = 255
        out.append(f)
    return out


def _read_back(path) -> tuple[dict, list[np.ndarray]]:
    """imageio-ffmpeg's reader: (meta, RGB frames) of a video file."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader]
    return meta, frames


def test_encoded_clip_has_the_frames_size_and_rate(tmp_path):
    import imageio_ffmpeg

    from steadyseg.curation.video_sample import encode_clip

    src = _frames(10, 48, 64)
    clip = encode_clip(src, tmp_path / "clip.mp4", fps=25.0)
    assert (clip.width, clip.height, clip.frame_count, float(clip.fps)) == (64, 48, 10, 25.0)
    meta, frames = _read_back(clip.path)
    assert meta["codec"] == "h264" and meta["size"] == (64, 48) and meta["fps"] == 25.0
    assert meta["pix_fmt"].startswith("yuv420p")
    assert len(frames) == 10 and imageio_ffmpeg.count_frames_and_secs(str(clip.path))[0] == 10
    # decoded frame t is source frame t (and not a neighbour): constant frame rate, no dropped/duplicated frame
    for t, f in enumerate(frames):
        errs = [np.abs(f.astype(int) - s.astype(int)).mean() for s in src]
        assert int(np.argmin(errs)) == t and errs[t] < 4.0, (t, errs)
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file is renamed into place"


def test_odd_sized_clip_is_padded_bottom_right(tmp_path):
    from steadyseg.curation.video_sample import encode_clip, even_size, pad_to, write_frame_labels

    src = _frames(3, 33, 47)
    clip = encode_clip(src, tmp_path / "odd.mp4", fps=24.0)
    assert (clip.height, clip.width) == even_size(33, 47) == (34, 48)
    meta, frames = _read_back(clip.path)
    assert meta["size"] == (48, 34) and len(frames) == 3
    assert np.abs(frames[1][:33, :47].astype(int) - src[1].astype(int)).mean() < 4.0
    mask = np.zeros((33, 47), np.uint8)
    mask[-1, -1] = 7
    paths = write_frame_labels(tmp_path, 0, mask=mask, heat=mask, regions=(mask > 0).astype(np.uint8),
                               size=(34, 48))
    import cv2

    back = cv2.imread(paths["masks"], cv2.IMREAD_UNCHANGED)
    assert back.shape == (34, 48) and back[32, 46] == 7 and back[33].max() == 0 and back[:, 47].max() == 0
    assert pad_to(np.ones((2, 3, 3), np.uint8), 2, 4, mode="edge")[:, 3].min() == 1
    with pytest.raises(ValueError, match="smaller"):
        pad_to(np.ones((4, 4), np.uint8), 2, 4, mode="zero")


def test_video_metadata_is_what_we_encoded(fo_env, tmp_path):
    from steadyseg.curation.video_sample import encode_clip, video_metadata

    clip = encode_clip(_frames(12, 48, 64), tmp_path / "clip.mp4", fps=24.0)
    md = video_metadata(clip)
    assert isinstance(md, fo_env.VideoMetadata)
    assert (md.frame_width, md.frame_height, md.total_frame_count) == (64, 48, 12)
    assert md.frame_rate == 24.0 and md.duration == pytest.approx(0.5)
    assert (md.mime_type, md.encoding_str) == ("video/mp4", "avc1")
    assert md.size_bytes == clip.path.stat().st_size
    meta, _ = _read_back(clip.path)  # what ffmpeg itself reports agrees
    assert meta["fps"] == md.frame_rate and meta["size"] == (md.frame_width, md.frame_height)
    assert meta["duration"] == pytest.approx(md.duration, abs=1.5 / md.frame_rate)


def test_spike_runs():
    from steadyseg.curation.video_sample import spike_runs

    assert spike_runs(np.array([0, 1, 1, 0, 1], bool)) == [(2, 3), (5, 5)]
    assert spike_runs(np.array([1, 1], bool)) == [(1, 2)] and spike_runs(np.zeros(4, bool)) == []


@pytest.fixture
def built(fo_env, dataset_name, tmp_path, monkeypatch):
    """Frame + video dataset of a synthetic flickering clip, built while every ffprobe route of FiftyOne fails."""
    import eta.core.video as etav

    from steadyseg.curation.video import build_flicker_dataset
    from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder

    def no_ffprobe(*args, **kwargs):
        raise AssertionError("FiftyOne tried to run ffprobe")

    monkeypatch.setattr(etav.VideoStreamInfo, "build_for", no_ffprobe)
    monkeypatch.setattr(etav.FFprobe, "run", no_ffprobe)
    video = make_moving_shapes_video(num_frames=8, height=64, width=80, flicker_px=3, seed=3)
    paths = write_video_folder(video, tmp_path / "vid")
    ds = build_flicker_dataset(paths["frames"], paths["predictions"], dataset_name, tmp_path / "out", window=2,
                               progress=False)
    video_ds = fo_env.load_dataset(ds.info["steadyseg_video"]["video_dataset"])
    video_name = video_ds.name
    yield {"frames": ds, "video": video_ds, "paths": paths, "out": tmp_path / "out"}
    if fo_env.dataset_exists(video_name):
        fo_env.delete_dataset(video_name)


def test_video_dataset_carries_the_frame_labels(built):
    import cv2

    from steadyseg.curation.appearance import FLICKER_COLOR, HEAT_COLOR, MASK_COLOR

    ds, vds, out = built["frames"], built["video"], built["out"]
    assert vds.name == f"{ds.name}-video" and vds.media_type == "video" and len(vds) == 1
    info = ds.info["steadyseg_video"]
    assert vds.info["steadyseg_video"] == info
    assert info["frames_dataset"] == ds.name and info["video_file"] == str((out / "clip.mp4").resolve())
    assert info["fps"] == 24.0  # a frame folder carries no rate: DAVIS's 24 fps
    sample = vds.first()
    assert sample.filepath == info["video_file"]
    md = sample.metadata
    assert (md.frame_width, md.frame_height, md.total_frame_count, md.frame_rate) == (80, 64, 8, 24.0)
    assert (md.mime_type, md.encoding_str, md.duration) == ("video/mp4", "avc1", pytest.approx(8 / 24))
    assert sample.e_raw == pytest.approx(info["e_raw"]) and sample.e_cons == pytest.approx(info["e_cons"])
    assert list(sample.frames.keys()) == list(range(1, 9))
    by_index = {s.frame_index: s for s in ds}
    for number, frame in sample.frames.items():
        ref = by_index[number - 1]
        assert frame.frame_index == number - 1
        assert frame.inconsistency == ref.inconsistency and frame.flicker_fraction == ref.flicker_fraction
        mask = cv2.imread(frame.masks.mask_path, cv2.IMREAD_UNCHANGED)
        heat = cv2.imread(frame.flicker_map.map_path, cv2.IMREAD_UNCHANGED)
        regions = cv2.imread(frame.flicker_regions.mask_path, cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask, ref.masks.mask) and np.array_equal(heat, ref.flicker_map.map)
        assert np.array_equal(regions, ref.flicker_regions.mask) and frame.flicker_map.range == [0, 255]
    spikes = ds.load_saved_view("flicker_spikes").values("frame_index")
    runs = [d.support for d in sample.flicker_spikes.detections]
    assert sorted({n - 1 for first, last in runs for n in range(first, last + 1)}) == sorted(spikes)
    assert vds.app_config.active_fields.paths == ["frames.masks", "frames.flicker_map", "frames.flicker_regions"]
    colors = {f["path"]: f["fieldColor"] for f in vds.app_config.color_scheme.fields}
    assert colors == {"frames.masks": MASK_COLOR, "frames.flicker_map": HEAT_COLOR,
                      "frames.flicker_regions": FLICKER_COLOR}
    # the frame dataset and its views are unchanged
    assert len(ds) == 8 and set(ds.list_saved_views()) == {"clip_in_order", "flicker_worst", "flicker_spikes"}


def test_app_server_uses_our_metadata_not_ffprobe(built, monkeypatch):
    """The App server reads frame size and rate from sample.metadata; it would call ffprobe only without them."""
    import fiftyone.server.metadata as fosm

    async def no_read(*args, **kwargs):
        raise AssertionError("the App server tried to read the video's metadata (ffprobe)")

    monkeypatch.setattr(fosm, "read_metadata", no_read)
    monkeypatch.setattr(fosm, "get_stream_info", no_read)
    vds = built["video"]
    doc = vds._sample_collection.find_one({})
    got = asyncio.run(fosm.get_metadata(vds, doc, "video", {}, {}))
    assert got["frame_rate"] == 24.0 and got["aspect_ratio"] == pytest.approx(80 / 64)


def test_existing_video_dataset_needs_overwrite(built):
    from steadyseg.curation.video import build_flicker_dataset

    paths, vds = built["paths"], built["video"]
    built["frames"].delete()
    with pytest.raises(ValueError, match=f"{vds.name!r} exists; pass overwrite"):
        build_flicker_dataset(paths["frames"], paths["predictions"], vds.name[:-len("-video")], built["out"],
                              progress=False)
    ds = build_flicker_dataset(paths["frames"], paths["predictions"], vds.name[:-len("-video")], built["out"],
                               window=2, progress=False, overwrite=True, fps=12.5)
    assert ds.info["steadyseg_video"]["fps"] == 12.5


def test_missing_imageio_ffmpeg_gives_a_clear_error(monkeypatch):
    from steadyseg.curation.env import CurationExtraMissing
    from steadyseg.curation.video_sample import require_ffmpeg

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(CurationExtraMissing, match=r"imageio-ffmpeg.*pip install 'steadyseg\[curation\]'"):
        require_ffmpeg()


def test_curate_video_command_prints_both_datasets(fo_env, dataset_name, tmp_path, capsys):
    """``steadyseg curate video``: the frame dataset, then the video dataset with its clip at the --fps asked for;
    ``--no-video-sample`` builds the frame dataset alone."""
    from steadyseg.cli import main
    from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder

    video = make_moving_shapes_video(num_frames=6, height=48, width=64, flicker_px=3, seed=4)
    paths = write_video_folder(video, tmp_path / "vid")
    argv = ["curate", "video", "--video", str(paths["frames"]), "--masks", str(paths["predictions"]),
            "--window", "1", "--flow-cache", str(tmp_path / "flow")]
    assert main(argv + ["--name", dataset_name, "--out", str(tmp_path / "out"), "--fps", "12"]) == 0
    out = capsys.readouterr().out
    assert f"dataset {dataset_name!r}: 6 frames" in out
    assert f"video dataset {dataset_name + '-video'!r}" in out and "at 12 fps" in out
    assert fo_env.load_dataset(dataset_name + "-video").first().metadata.frame_rate == 12
    fo_env.delete_dataset(dataset_name + "-video")
    fo_env.delete_dataset(dataset_name)
    assert main(argv + ["--name", dataset_name, "--out", str(tmp_path / "out2"), "--no-video-sample"]) == 0
    assert "video dataset" not in capsys.readouterr().out
    assert not fo_env.dataset_exists(dataset_name + "-video") and not (tmp_path / "out2" / "clip.mp4").exists()
