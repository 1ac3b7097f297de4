"""Optical flow backends, the disk cache and the provider."""

from __future__ import annotations

import numpy as np
import pytest

from steadyseg.datasets.flow import (FlowCache, FlowProvider, compute_flow, flow_cache_key, flow_params,
                                     window_pairs)
from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder
from steadyseg.datasets.video import open_video


def _texture(h=96, w=128, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.astype(np.uint8)


@pytest.mark.parametrize("backend,preset", [("dis", "medium"), ("dis", "ultrafast"), ("farneback", "medium")])
def test_pure_translation_is_recovered(backend, preset):
    a = _texture()
    dx, dy = 3, -2
    b = np.roll(a, shift=(dy, dx), axis=(0, 1))  # pixel x of a is at x + (dx, dy) in b
    flow = compute_flow(a, b, backend=backend, preset=preset)
    assert flow.shape == (96, 128, 2) and flow.dtype == np.float32
    inner = flow[12:-12, 12:-12]
    assert abs(np.median(inner[..., 0]) - dx) < 0.2 and abs(np.median(inner[..., 1]) - dy) < 0.2
    err = np.hypot(inner[..., 0] - dx, inner[..., 1] - dy)
    assert np.mean(err < 0.5) > 0.9


def test_compute_flow_input_checks():
    a = _texture()
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="differ in size"):
        compute_flow(a, a[:50])
    with pytest.raises(ValueError, match="unknown flow backend 'lk'"):
        compute_flow(a, a, backend="lk")
    with pytest.raises(ValueError, match="unknown DIS preset 'slow'"):
        compute_flow(a, a, preset="slow")


def test_window_pairs():
    assert window_pairs(4, 1) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]
    pairs = window_pairs(10, 3)
    assert len(pairs) == len(set(pairs)) == 2 * (9 + 8 + 7)
    assert all(1 <= abs(p - q) <= 3 for p, q in pairs)
    assert window_pairs(1, 3) == []


@pytest.fixture(scope="module")
def synth_frames(tmp_path_factory):
    video = make_moving_shapes_video(num_frames=6, height=64, width=80, seed=3)
    paths = write_video_folder(video, tmp_path_factory.mktemp("synth"))
    return open_video(paths["frames"])


def test_cache_hit_is_identical(synth_frames, tmp_path):
    prov = FlowProvider(synth_frames, cache_dir=tmp_path / "c", memory_items=0)
    f1 = prov(0, 2)
    assert prov.stats["misses"] == 1 and prov.stats["hits"] == 0
    f2 = prov(0, 2)
    assert prov.stats["hits"] == 1 and prov.stats["misses"] == 1
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(f1, compute_flow(synth_frames[0], synth_frames[2]))
    # a new provider (new process, say) finds it on disk
    prov2 = FlowProvider(open_video(synth_frames.source), cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(prov2(0, 2), f1)
    assert prov2.stats["hits"] == 1 and prov2.stats["misses"] == 0
    np.testing.assert_array_equal(prov(3, 3), 0.0)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "nan"])
def test_corrupt_cache_entry_is_detected_and_recomputed(synth_frames, tmp_path, damage):
    prov = FlowProvider(synth_frames, cache_dir=tmp_path, memory_items=0)
    good = prov(1, 0)
    path = prov.cache.path(prov.key(1, 0))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":  # one byte inside the array data: zip CRC-32 catches it
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    else:
        bad = good.copy()
        bad[0, 0, 0] = np.nan
        np.savez(path.with_suffix(".tmp.npz"), flow=bad)
        path.with_suffix(".tmp.npz").replace(path)
    assert prov.cache.get(prov.key(1, 0)) is None and not path.exists()  # detected and deleted
    prov.cache.put(prov.key(1, 0), good)
    path.write_bytes(b"PK\x03\x04 broken")
    again = prov(1, 0)
    np.testing.assert_array_equal(again, good)
    assert prov.stats["corrupt"] == 1 and prov.stats["misses"] == 2
    assert path.exists()  # rewritten


def test_cache_shape_check_and_dtype(tmp_path):
    cache = FlowCache(tmp_path, dtype="float16")
    flow = np.random.default_rng(0).normal(size=(5, 6, 2)).astype(np.float32)
    key = flow_cache_key("a", "b", {"backend": "dis"})
    cache.put(key, flow)
    got = cache.get(key)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, flow, atol=2e-3)
    assert cache.get(key, shape=(6, 5)) is None and key not in cache
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        cache.put(key, flow[..., :1])
    with pytest.raises(ValueError, match="NaN"):
        cache.put(key, np.full((2, 2, 2), np.nan, np.float32))


def test_cache_key_changes_with_backend_and_params(synth_frames, tmp_path):
    keys = {FlowProvider(synth_frames, backend="dis", preset=p).key(0, 1) for p in ("ultrafast", "fast", "medium")}
    keys.add(FlowProvider(synth_frames, backend="farneback").key(0, 1))
    assert len(keys) == 4
    prov = FlowProvider(synth_frames)
    assert prov.key(0, 1) != prov.key(1, 0)
    assert prov.key(0, 1) == FlowProvider(synth_frames).key(0, 1)
    assert flow_cache_key("a", "b", flow_params(backend="dis")) != flow_cache_key("a", "c", flow_params(backend="dis"))


def test_raft_missing_weights_is_clear(tmp_path):
    a = _texture(64, 64)
    missing = tmp_path / "raft_small_weights.pth"
    with pytest.raises(FileNotFoundError) as err:
        compute_flow(a, a, backend="raft", raft_weights=missing)
    assert str(missing) in str(err.value) and "Raft_Small_Weights" in str(err.value)
    with pytest.raises(FileNotFoundError, match="raft_weights"):
        FlowProvider([a, a], backend="raft")


def test_raft_with_tiny_local_checkpoint(tmp_path):
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    weights = tmp_path / "raft_small_random.pth"
    torch.save(raft_small(weights=None, progress=False).state_dict(), weights)
    a = _texture(60, 68, seed=1)  # not a multiple of 8: padded inside, flow cropped back
    b = np.roll(a, 2, axis=1)
    flow = compute_flow(a, b, backend="raft", raft_weights=weights, raft_updates=2)
    assert flow.shape == (60, 68, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    # the provider keys on the weights' content and caches RAFT flow too (same result: deterministic on CPU)
    prov = FlowProvider([a, b], backend="raft", raft_weights=weights, raft_updates=2, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(prov(0, 1), flow)
    # a wrong state dict is a clear error
    bad = tmp_path / "bad.pth"
    torch.save({"module.x": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="bad.pth: not a torchvision raft_small state dict"):
        compute_flow(a, b, backend="raft", raft_weights=bad)


def test_precompute_parallel_equals_serial(synth_frames, tmp_path):
    pairs = window_pairs(len(synth_frames), 2)
    serial = FlowProvider(synth_frames, cache_dir=tmp_path / "serial", n_jobs=1)
    parallel = FlowProvider(synth_frames, cache_dir=tmp_path / "parallel", n_jobs=2)
    r1 = serial.precompute(pairs, progress=False)
    r2 = parallel.precompute(pairs, progress=True)
    assert r1["computed"] == r2["computed"] == len(pairs) == 18
    for p, q in pairs:
        np.testing.assert_array_equal(serial(p, q), parallel(p, q))
    assert parallel.stats["misses"] == 0 and parallel.stats["hits"] == len(pairs)
    again = parallel.precompute(pairs + [(0, 1), (2, 2)], progress=False)  # cached, duplicates, p == q dropped
    assert again["computed"] == 0 and again["cached"] == len(pairs)
    with pytest.raises(ValueError, match="cache_dir"):
        FlowProvider(synth_frames).precompute(pairs)
    with pytest.raises(IndexError, match="out of range"):
        serial(0, 6)


def test_flow_cli_precomputes_window(synth_frames, tmp_path, capsys):
    import argparse

    from steadyseg.datasets import flow_cli

    parser = argparse.ArgumentParser()
    flow_cli.add_arguments(parser)
    cache = tmp_path / "cache"
    argv = ["--frames", str(synth_frames.source), "--cache", str(cache), "--window", "2", "--preset", "ultrafast",
            "--quiet"]
    assert flow_cli.main(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert "18 pairs, 0 already cached, 18 computed" in out
    assert (cache / f"flow-run-{synth_frames.source.name}.yaml").is_file()
    prov = FlowProvider(synth_frames, preset="ultrafast", cache_dir=cache)
    for p, q in window_pairs(len(synth_frames), 2):
        prov(p, q)
    assert prov.stats["misses"] == 0 and prov.stats["hits"] == 18
    assert flow_cli.main(parser.parse_args(argv)) == 0
    assert "18 already cached, 0 computed" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--window"):
        flow_cli.main(parser.parse_args(argv + ["--window", "0"]))
    # without --cache: the persistent default cache, the one `steadyseg measure` reads without --cache
    from steadyseg.datasets.flow import default_flow_cache_dir

    assert flow_cli.main(parser.parse_args(argv[:2] + argv[4:])) == 0
    assert f"-> {default_flow_cache_dir()}" in capsys.readouterr().out
    assert (default_flow_cache_dir() / f"flow-run-{synth_frames.source.name}.yaml").is_file()


def test_cache_format_header_and_damage_in_the_header(tmp_path):
    """Format 2: 32-byte header (magic, dtype, H, W, length, CRC-32) + raw array; any damaged field is a miss."""
    import struct

    from steadyseg.datasets.flow import CACHE_FORMAT_VERSION

    flow = np.random.default_rng(1).normal(0, 3, (7, 9, 2)).astype(np.float32)
    for compress in (False, True):
        cache = FlowCache(tmp_path / f"c{int(compress)}", compress=compress)
        key = flow_cache_key("a", "b", {"backend": "dis"})
        path = cache.put(key, flow)
        assert path == cache.path(key) and path.suffix == ".flow" and key in cache
        raw = path.read_bytes()
        magic, code, comp, h, w, nbytes = struct.unpack("<8sBBxxIIQ", raw[:28])
        assert magic == b"SSFLOW" + bytes([CACHE_FORMAT_VERSION, 0]) and (code, comp, h, w) == (0, compress, 7, 9)
        assert len(raw) == 32 + nbytes and (compress or nbytes == flow.nbytes)
        got = cache.get(key, shape=(7, 9))
        np.testing.assert_array_equal(got, flow)
        got[:] = 0  # a fresh array: changing it does not change the next read
        np.testing.assert_array_equal(cache.get(key), flow)
        for offset in (0, 8, 12, 16, 20, 28, len(raw) - 1):  # magic, dtype, H, W, length, CRC-32, last byte
            bad = bytearray(raw)
            bad[offset] ^= 0x01
            path.write_bytes(bytes(bad))
            before = cache.corrupt
            assert cache.get(key) is None and not path.exists(), offset
            assert cache.corrupt == before + 1
        path.write_bytes(raw + b"\x00")  # trailing bytes
        assert cache.get(key) is None and not path.exists()
    # an entry of the old format (an .npz) is never looked at: the key and the suffix both changed
    old = tmp_path / "c0" / key[:2] / f"{key}.npz"
    np.savez(old, flow=flow)
    assert FlowCache(tmp_path / "c0").get(key) is None and old.exists()


def test_disk_hits_are_fresh_arrays(synth_frames, tmp_path):
    prov = FlowProvider(synth_frames, cache_dir=tmp_path)
    prov.precompute([(0, 1)], progress=False)
    a = prov(0, 1)
    a += 100.0  # the caller may change what it got
    b = prov(0, 1)
    np.testing.assert_array_equal(b, compute_flow(synth_frames[0], synth_frames[1]))
    assert prov.stats["hits"] == 2 and prov.stats["misses"] == 0


def test_valid_mask_entries(synth_frames, tmp_path):
    """M[p→q] is stored bit-packed beside the flows, keyed by both flow keys, the thresholds and the motion-boundary
    switch; it reads back equal to valid_mask_u8; a damaged entry is a miss, deleted and counted."""
    from steadyseg.datasets.flow import valid_cache_key
    from steadyseg.warp import DEFAULT_THRESHOLDS, ValidityThresholds, valid_mask_u8

    prov = FlowProvider(synth_frames, cache_dir=tmp_path, memory_items=0)
    assert prov.get_valid(0, 2) is None
    m = prov.valid(0, 2)
    want = valid_mask_u8(prov(2, 0), prov(0, 2))
    np.testing.assert_array_equal(m != 0, want != 0)
    assert 0 < np.count_nonzero(want) < want.size and prov.stats["valid_stored"] == 1
    got = prov.get_valid(0, 2)
    assert got.dtype == np.uint8 and got.shape == synth_frames.size and set(np.unique(got)) <= {0, 1}
    np.testing.assert_array_equal(got != 0, want != 0)
    assert prov.stats["valid_hits"] == 1
    key = prov.valid_key(0, 2)
    assert key == valid_cache_key(prov.key(2, 0), prov.key(0, 2), thresholds=DEFAULT_THRESHOLDS,
                                  check_motion_boundary=True)
    assert len({key, prov.valid_key(2, 0), prov.valid_key(0, 2, check_motion_boundary=False),
                prov.valid_key(0, 2, thresholds=ValidityThresholds(fb_beta=0.4))}) == 4
    path = prov.cache.valid_path(key)
    assert path.suffix == ".valid" and path.parent == prov.cache.path(prov.key(0, 2)).parent.parent / key[:2]
    h, w = synth_frames.size
    raw = path.read_bytes()
    assert len(raw) == 32 + (h * w + 7) // 8
    for damage in (lambda b: b[:-1], lambda b: b[:10], lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],
                   lambda b: b"SSFLOW" + b[6:]):
        path.write_bytes(damage(raw))
        before = prov.cache.corrupt
        assert prov.get_valid(0, 2) is None and not path.exists() and prov.cache.corrupt == before + 1
    assert prov.cache.get_valid(key, shape=(h + 1, w)) is None  # absent now: a plain miss
    prov.put_valid(0, 2, want)
    assert prov.cache.get_valid(key, shape=(h + 1, w)) is None and not path.exists()  # wrong size: a miss


def test_nearest_map_entries(synth_frames, tmp_path):
    """Nearest sampling maps: stored per flow (keyed by the flow's key), read back bit for bit, validated like the
    masks M (a damaged or foreign entry is a counted miss and deleted, a wrong size is a miss)."""
    from steadyseg.datasets.flow import nearest_map_cache_key
    from steadyseg.warp import nearest_sampling_map

    prov = FlowProvider(synth_frames, cache_dir=tmp_path / "c")
    assert prov.get_nearest_map(0, 2) is None and prov.get_nearest_map(1, 1) is None
    want = nearest_sampling_map(prov(0, 2))
    prov.put_nearest_map(0, 2, want)
    got = prov.get_nearest_map(0, 2)
    assert got.dtype == np.int16 and np.array_equal(got, want) and prov.stats["map_hits"] == 1
    assert prov.stats["map_stored"] == 1 and prov.get_nearest_map(2, 0) is None  # one map per direction
    key = nearest_map_cache_key(prov.key(0, 2))
    assert key != prov.key(0, 2) and key != prov.valid_key(0, 2)
    path = prov.cache.nearest_map_path(key)
    assert path.suffix == ".nnmap"
    h, w = synth_frames.size
    raw = path.read_bytes()
    assert len(raw) == 32 + h * w * 4
    for damage in (lambda b: b[:-1], lambda b: b[:10], lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],
                   lambda b: b"SSVALID" + b[7:]):
        path.write_bytes(damage(raw))
        before = prov.cache.corrupt
        assert prov.get_nearest_map(0, 2) is None and not path.exists() and prov.cache.corrupt == before + 1
    prov.put_nearest_map(0, 2, want)
    assert prov.cache.get_nearest_map(key, shape=(h + 1, w)) is None and not path.exists()  # wrong size: a miss
    with pytest.raises(ValueError, match="int16"):
        prov.cache.put_nearest_map(key, want.astype(np.int32))
    with pytest.raises(ValueError, match="size"):
        prov.put_nearest_map(0, 2, want[:-1])


def test_default_cache_location(monkeypatch, tmp_path):
    from steadyseg.datasets.flow import default_cache_root, default_flow_cache_dir

    monkeypatch.setenv("STEADYSEG_CACHE_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_root() == tmp_path / "s" and default_flow_cache_dir() == tmp_path / "s" / "flow"
    monkeypatch.delenv("STEADYSEG_CACHE_DIR")
    assert default_cache_root() == tmp_path / "x" / "steadyseg"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec: relative values are ignored
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert default_cache_root() == tmp_path / "h" / ".cache" / "steadyseg"
    assert not (tmp_path / "h").exists()  # nothing is created


def test_cache_info_and_clear(synth_frames, tmp_path):
    from steadyseg.datasets.flow import cache_info, clear_cache

    root = tmp_path / "c"
    empty = {"entries": 0, "bytes": 0, "disk_bytes": 0}
    assert cache_info(root) == {"location": str(root), "exists": False, "entries": 0, "bytes": 0, "disk_bytes": 0,
                                "kinds": {"flow": empty, "valid": empty, "nearest-map": empty}}
    prov = FlowProvider(synth_frames, cache_dir=root)
    prov.precompute(window_pairs(4, 1), progress=False)
    for p, q in window_pairs(4, 1):
        prov.valid(p, q)
    prov.put_nearest_map(0, 1, np.zeros((*synth_frames.size, 2), np.int16))
    (root / "flow-run-x.yaml").write_text("kept: true\n")
    (root / "ab").mkdir(exist_ok=True)
    (root / "ab" / "notes.txt").write_text("not an entry")
    orphan = prov.cache.path(prov.key(0, 1)).parent / ".x.flow.999999999.abc.tmp"  # a dead writer's temporary
    orphan.write_bytes(b"partial")
    info = cache_info(root)
    h, w = synth_frames.size
    assert info["exists"] and info["kinds"]["flow"]["entries"] == 6 and info["kinds"]["valid"]["entries"] == 6
    assert info["entries"] == 13 and info["kinds"]["flow"]["bytes"] == 6 * (32 + h * w * 8)
    assert info["kinds"]["nearest-map"] == {"entries": 1, "bytes": 32 + h * w * 4,
                                            "disk_bytes": info["kinds"]["nearest-map"]["disk_bytes"]}
    assert info["bytes"] == 6 * (32 + h * w * 8) + 6 * (32 + (h * w + 7) // 8) + 32 + h * w * 4
    assert info["disk_bytes"] > 0
    removed = clear_cache(root)
    assert removed["entries"] == 13 and cache_info(root)["entries"] == 0
    assert (root / "flow-run-x.yaml").is_file() and (root / "ab" / "notes.txt").is_file() and not orphan.exists()
    assert sorted(p.name for p in root.iterdir()) == ["ab", "flow-run-x.yaml"]  # empty shards removed
