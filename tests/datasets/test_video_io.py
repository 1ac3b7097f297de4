"""Video readers: DAVIS folders, image folders, video files, laziness, errors."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from steadyseg.datasets.video import VideoFrames, natural_sort_key, open_video


def test_davis2016_folder(davis2016):
    seq = davis2016 / "JPEGImages" / "480p" / "blackswan"
    frames = open_video(seq)
    assert isinstance(frames, VideoFrames)
    assert len(frames) == 50 and frames.size == (480, 854)
    assert frames.names[:3] == ["00000", "00001", "00002"] and frames.source == seq
    f = frames[7]
    assert f.shape == (480, 854, 3) and f.dtype == np.uint8
    # RGB order: equals OpenCV's BGR decode reversed
    bgr = cv2.imread(str(seq / "00007.jpg"))
    np.testing.assert_array_equal(f, bgr[..., ::-1])
    np.testing.assert_array_equal(frames[-1], frames[49])
    with pytest.raises(IndexError):
        frames[50]


def test_davis_root_sequence_and_max_frames(davis2016):
    frames = open_video(davis2016, sequence="dog", max_frames=5)
    assert len(frames) == 5 and frames.source.name == "dog"
    with pytest.raises(ValueError, match="DAVIS root"):
        open_video(davis2016)
    with pytest.raises(FileNotFoundError, match="nope"):
        open_video(davis2016, sequence="nope")


def test_lazy_reader_holds_no_pixels(davis2016):
    frames = open_video(davis2016 / "JPEGImages" / "480p" / "camel")
    frames[0]
    frames.content_hash(1)
    # the object (and its pickle, as shipped to joblib workers) holds names/paths/hashes only: far below one frame
    assert len(pickle.dumps(frames)) < 20_000
    assert not any(isinstance(v, np.ndarray) for v in vars(frames).values())


def test_content_hash_depends_on_pixels_not_path(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "0.png"), img[..., ::-1])
        cv2.imwrite(str(tmp_path / d / "1.png"), (255 - img)[..., ::-1])
    fa, fb = open_video(tmp_path / "a"), open_video(tmp_path / "b")
    assert fa.content_hash(0) == fb.content_hash(0)
    assert fa.content_hash(0) != fa.content_hash(1)
    np.testing.assert_array_equal(fa[0], img)  # PNG is lossless


def test_natural_sort_and_mixed_extensions(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    for i, ext in [(2, ".png"), (10, ".bmp"), (1, ".jpg")]:
        cv2.imwrite(str(tmp_path / f"f{i}{ext}"), img + i)
    (tmp_path / "notes.txt").write_text("x")
    frames = open_video(tmp_path)
    assert frames.names == ["f1", "f2", "f10"]
    assert sorted(["f10", "f2", "f1"], key=natural_sort_key) == ["f1", "f2", "f10"]


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        open_video(tmp_path / "missing_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no image frames"):
        open_video(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "00000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="00000.jpg: cannot decode"):
        open_video(bad)
    (tmp_path / "clip.txt").write_text("x")
    with pytest.raises(ValueError, match="clip.txt"):
        open_video(tmp_path / "clip.txt")
    # a frame of a different size is reported when read, naming the file
    sz = tmp_path / "sizes"
    sz.mkdir()
    cv2.imwrite(str(sz / "0.png"), np.zeros((10, 12, 3), np.uint8))
    cv2.imwrite(str(sz / "1.png"), np.zeros((11, 12, 3), np.uint8))
    frames = open_video(sz)
    with pytest.raises(ValueError, match="1.png: frame size"):
        frames[1]


@pytest.mark.parametrize("ext,fourcc", [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_video_file(tmp_path, ext, fourcc):
    path = tmp_path / f"clip{ext}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    levels = [20, 60, 100, 140, 180, 220, 240]
    for v in levels:  # flat frames survive lossy coding within a few levels
        img = np.full((48, 64, 3), v, np.uint8)
        img[:, :, 0] = 255 - v  # distinct channels: checks the BGR->RGB swap
        writer.write(img)
    writer.release()
    frames = open_video(path)
    assert len(frames) == len(levels) and frames.size == (48, 64)
    assert frames.names[0] == "00000"
    order = [3, 0, 6, 1, 2, 5, 4, 4]  # random access, backwards seeks and repeats
    for i in order:
        f = frames[i]
        assert f.shape == (48, 64, 3) and f.dtype == np.uint8
        assert abs(float(f[..., 0].mean()) - levels[i]) < 6  # R channel (B written as 255 - v)
        assert abs(float(f[..., 2].mean()) - (255 - levels[i])) < 6
    clone = pickle.loads(pickle.dumps(frames))  # reopened lazily in the receiving process
    np.testing.assert_array_equal(clone[5], frames[5])
    assert len(open_video(path, max_frames=3)) == 3
