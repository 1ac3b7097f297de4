"""Mask stacks: DAVIS 2016 binary, palette ids, label PNGs, soft probabilities, matching checks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from steadyseg.datasets.masks import MaskStack, check_matching, labels_to_onehot, open_masks
from steadyseg.datasets.video import open_video


def test_davis2016_binary_reading(davis2016):
    folder = davis2016 / "Annotations" / "480p" / "blackswan"
    masks = open_masks(folder)
    assert isinstance(masks, MaskStack)
    assert masks.reading == "davis2016-binary" and len(masks) == 50 and masks.size == (480, 854)
    m = masks[0]
    raw = np.array(Image.open(folder / "00000.png"))
    assert m.dtype == np.int32 and set(np.unique(m)) == {0, 1}
    np.testing.assert_array_equal(m, (raw == 255).astype(np.int32))  # 255 is the object, not void
    p = masks.probs(0)
    assert p.shape == (2, 480, 854) and p.dtype == np.float32
    np.testing.assert_array_equal(p[1], m.astype(np.float32))
    np.testing.assert_array_equal(p.sum(0), 1.0)
    check_matching(open_video(davis2016 / "JPEGImages" / "480p" / "blackswan"), masks)


def test_palette_reading_and_binary(davis_osvos, davis2016):
    folder = davis_osvos / "bmx-trees"
    ids = open_masks(folder)
    assert ids.reading == "palette-ids" and ids.num_classes is None
    raw = np.array(Image.open(folder / "00010.png"))
    np.testing.assert_array_equal(ids[10], raw.astype(np.int32))
    assert set(np.unique(ids[10])) == {0, 1, 2}  # two objects in this frame
    assert ids.probs(10).shape[0] == 3  # stack max label + 1
    binary = open_masks(folder, binary=True)
    assert binary.reading == "palette-ids" and binary.num_classes == 2
    np.testing.assert_array_equal(binary[10], (raw > 0).astype(np.int32))
    assert binary.probs(10).shape == (2, 480, 854)
    check_matching(open_video(davis2016 / "JPEGImages" / "480p" / "bmx-trees"), binary)


def test_void_and_label_png(tmp_path):
    lab = np.array([[0, 1, 2], [255, 3, 0]], dtype=np.uint8)
    Image.fromarray(lab, mode="L").save(tmp_path / "00000.png")
    Image.fromarray(lab[::-1].copy(), mode="L").save(tmp_path / "00001.png")
    masks = open_masks(tmp_path)
    assert masks.reading == "label-png"
    np.testing.assert_array_equal(masks[0], lab.astype(np.int32))
    p = masks.probs(0)
    assert p.shape == (4, 2, 3)
    np.testing.assert_array_equal(p[:, 1, 0], 0.0)  # void -> all-zero column
    assert p[2, 0, 2] == 1.0 and p.sum() == 5
    b = open_masks(tmp_path, binary=True)
    np.testing.assert_array_equal(b[0], [[0, 1, 1], [255, 1, 0]])
    with pytest.raises(ValueError, match="label 3 does not fit num_classes=3"):
        open_masks(tmp_path, num_classes=3).probs(0)
    with pytest.raises(ValueError, match=r"00000.png: DAVIS-2016 binary reading expects values \{0, 255\}"):
        open_masks(tmp_path, reading="davis2016-binary")[0]


def test_max_frames_and_num_classes_are_opening_arguments(tmp_path):
    labs = [np.full((2, 3), t, dtype=np.uint8) for t in range(5)]   # frame t holds label t everywhere
    for t, lab in enumerate(labs):
        Image.fromarray(lab, mode="L").save(tmp_path / f"{t:05d}.png")
    full = open_masks(tmp_path)
    head = open_masks(tmp_path, max_frames=3)
    assert len(full) == 5 and len(head) == 3 and head.names == ["00000", "00001", "00002"]
    assert head.reading == full.reading == "label-png"
    np.testing.assert_array_equal(head[-1], labs[2])
    with pytest.raises(IndexError):
        head[3]
    assert full.class_count() == 5 and head.class_count() == 3  # max label of the kept masks + 1
    assert len(open_masks(tmp_path, max_frames=99)) == 5
    with pytest.raises(ValueError, match="max_frames must be >= 1"):
        open_masks(tmp_path, max_frames=0)
    # num_classes is read-only: set it at opening or take a copy with it
    with pytest.raises(AttributeError):
        head.num_classes = 4
    four = head.with_num_classes(4)
    assert head.num_classes is None and four.num_classes == 4 and four.probs(1).shape == (4, 2, 3)
    np.testing.assert_array_equal(four[2], head[2])
    soft = np.zeros((4, 2, 2, 3), np.float32)
    soft[:, 0] = 1.0
    np.save(tmp_path.parent / "soft.npy", soft)
    s = open_masks(tmp_path.parent / "soft.npy", max_frames=2)
    assert len(s) == 2 and s.num_classes == 2 and s.probs(1).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="2 channels"):
        s.with_num_classes(3)


def test_onehot_function():
    lab = np.array([[0, 2], [255, 1]])
    oh = labels_to_onehot(lab, 3)
    np.testing.assert_array_equal(oh.argmax(0)[[0, 0, 1], [0, 1, 1]], [0, 2, 1])
    np.testing.assert_array_equal(oh[:, 1, 0], 0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        labels_to_onehot(np.zeros((1, 2, 2), int), 2)


def _probs(rng, t, c, h, w):
    x = rng.random((t, c, h, w)).astype(np.float32)
    return x / x.sum(1, keepdims=True)


def test_soft_probs_single_file_and_folder(tmp_path):
    rng = np.random.default_rng(0)
    probs = _probs(rng, 4, 3, 10, 12)
    np.save(tmp_path / "video.npy", probs)
    np.savez(tmp_path / "video.npz", probs=probs, other=np.zeros(1))
    for path in (tmp_path / "video.npy", tmp_path / "video.npz"):
        s = open_masks(path)
        assert s.reading == "soft-probs" and s.num_classes == 3 and len(s) == 4 and s.size == (10, 12)
        np.testing.assert_array_equal(s.probs(2), probs[2])
        np.testing.assert_array_equal(s[2], probs[2].argmax(0))
        sb = open_masks(path, binary=True)
        np.testing.assert_allclose(sb.probs(1), np.stack([probs[1, 0], 1 - probs[1, 0]]))
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(4):
        np.save(folder / f"{t:05d}.npy", probs[t])
    s = open_masks(folder)
    assert s.reading == "soft-probs" and s.names == ["00000", "00001", "00002", "00003"]
    np.testing.assert_array_equal(s[3], probs[3].argmax(0))
    with pytest.raises(ValueError, match="num_classes=4"):
        open_masks(folder, num_classes=4)
    np.save(folder / "00001.npy", probs[1] * 3)  # not probabilities
    with pytest.raises(ValueError, match=r"00001.npy: probabilities outside \[0, 1\]"):
        s.probs(1)
    with pytest.raises(ValueError, match=r"expected \(T, C, H, W\)"):
        np.save(tmp_path / "bad.npy", probs[0])
        open_masks(tmp_path / "bad.npy")


def test_lazy_masks(davis2016):
    import pickle

    masks = open_masks(davis2016 / "Annotations" / "480p" / "camel")
    masks[0]
    assert len(pickle.dumps(masks)) < 20_000


def test_mismatch_names_both_folders_and_first_file(tmp_path, davis2016):
    frames_dir = davis2016 / "JPEGImages" / "480p" / "car-shadow"
    ann = davis2016 / "Annotations" / "480p" / "car-shadow"
    partial = tmp_path / "car-shadow-masks"
    partial.mkdir()
    for name in sorted(p.name for p in ann.iterdir()):
        if name != "00017.png":
            shutil.copy(ann / name, partial / name)
    frames = open_video(frames_dir)
    with pytest.raises(ValueError) as err:
        check_matching(frames, open_masks(partial))
    msg = str(err.value)
    assert str(frames_dir) in msg and str(partial) in msg and "00017.jpg" in msg and "count" in msg
    # a size mismatch names the first offending mask
    sized = tmp_path / "sized"
    sized.mkdir()
    for k, name in enumerate(sorted(p.name for p in ann.iterdir())):
        im = Image.open(ann / name)
        (im.resize((427, 240)) if k >= 5 else im).save(sized / name)
    with pytest.raises(ValueError) as err:
        check_matching(frames, open_masks(sized))
    msg = str(err.value)
    assert str(frames_dir) in msg and str(sized) in msg and "00005.png" in msg and "427x240" in msg


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_masks(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no mask files"):
        open_masks(tmp_path)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "0.png")
    with pytest.raises(ValueError, match="0.png: colour mask PNG"):
        open_masks(tmp_path)
    np.save(tmp_path / "1.npy", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="both PNG masks and .npy"):
        open_masks(tmp_path)


def test_write_label_png_round_trips_each_reading(tmp_path):
    from PIL import Image

    from steadyseg.datasets.masks import open_masks, write_label_png

    labels = np.zeros((6, 8), np.int32)
    labels[1:4, 2:5] = 1
    write_label_png(tmp_path / "bin" / "00000.png", labels, reading="davis2016-binary")
    stack = open_masks(tmp_path / "bin")
    assert stack.reading == "davis2016-binary" and np.array_equal(stack[0], labels)

    ids = labels.copy()
    ids[5, :] = 2
    ids[0, 0] = 255
    palette = [0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * (768 - 9)
    write_label_png(tmp_path / "pal" / "00000.png", ids, reading="palette-ids", palette=palette)
    assert Image.open(tmp_path / "pal" / "00000.png").getpalette()[:9] == palette[:9]
    stack = open_masks(tmp_path / "pal")
    assert stack.reading == "palette-ids" and np.array_equal(stack[0], ids)

    big = labels * 300
    path = write_label_png(tmp_path / "lab" / "00000.png", big, reading="label-png")
    assert np.array(Image.open(path)).max() == 300

    with pytest.raises(ValueError, match="needs 2 classes"):
        write_label_png(tmp_path / "x.png", ids, reading="davis2016-binary")
    with pytest.raises(ValueError, match="soft-probs"):
        write_label_png(tmp_path / "x.png", labels, reading="soft-probs")
