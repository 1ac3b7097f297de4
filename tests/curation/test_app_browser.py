"""The FiftyOne App in a real headless browser (Debian's chromium via Playwright): samples, saved views and the
App config (active label fields, colours) as the App's own API serves them.

Needs /usr/bin/chromium (scripts/install_browser.sh) and the playwright package (dev extra); fails, never skips,
when they are missing. The screenshots are kept in artifacts/curation_app.png, artifacts/curation_video_app.png (the
frame dataset) and artifacts/curation_video_player.png (the video dataset in the App's player).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

from steadyseg.curation.app import launch_app, view_url
from steadyseg.curation.build import build_curation_dataset

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("STEADYSEG_CHROMIUM", "/usr/bin/chromium")
HEADLESS_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _page_state(page) -> dict:
    return page.evaluate("""() => ({
        counts: [...document.querySelectorAll('[data-cy=entry-count-part]')].map(e => e.innerText.trim()),
        lookers: document.querySelectorAll('[data-cy=looker]').length,
        text: document.body.innerText.slice(0, 400)})""")


def _wait_for(page, ok, what: str, timeout: float = 60.0) -> dict:
    """Poll the page until ``ok(state)``; fail with the last state (what the App showed) otherwise."""
    deadline = time.monotonic() + timeout
    state = _page_state(page)
    while not ok(state):
        if time.monotonic() > deadline:
            pytest.fail(f"App never showed {what} within {timeout} s; last state: {state}")
        time.sleep(0.5)
        state = _page_state(page)
    return state


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _playwright():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: run scripts/install_browser.sh (apt-get install chromium)")
    try:
        import playwright.sync_api as playwright
    except ImportError:
        pytest.fail("the playwright package is missing: install the dev extra (pip install -e '.[dev]')")
    return playwright


def _app_config(page, base: str, dataset_name: str) -> dict:
    """The dataset's App config (active fields, colours) as the App's GraphQL API gives it to the browser."""
    resp = page.request.post(f"{base}/graphql", data={
        "query": "query Q($name: String!) { dataset(name: $name) { appConfig { activeFields { paths } "
                 "colorScheme { colorBy fields { path fieldColor } colorscales { path name } } } } }",
        "variables": {"name": dataset_name}})
    assert resp.ok, resp.text()
    return resp.json()["data"]["dataset"]["appConfig"]


@pytest.mark.browser
def test_app_lists_samples_and_saved_views(fo_env, synthetic_pair, dataset_name, tmp_path):
    from steadyseg.curation.appearance import ORIGINAL_COLOR, REFINED_COLOR

    playwright = _playwright()
    p = synthetic_pair
    build_curation_dataset(p["original"], p["refined"], p["images"], dataset_name, progress=False)
    port = _free_port()
    lines: list[str] = []
    session = launch_app(dataset_name, port=port, wait=False, printer=lines.append)
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        assert any(f":{port}/datasets/{dataset_name}" in line for line in lines)
        assert any("changed_masks" in line for line in lines)
        base = f"http://127.0.0.1:{port}"
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=HEADLESS_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(view_url(base, dataset_name), wait_until="load", timeout=90_000)
            _wait_for(page, lambda st: "2" in st["counts"] and st["lookers"] >= 2, "2 samples in the grid")
            dismiss = page.get_by_text("Dismiss")
            if dismiss.count():
                dismiss.first.click()
            time.sleep(2.0)  # let the grid draw the masks before the screenshot
            page.screenshot(path=str(artifacts / "curation_app.png"))
            # saved views, as the App's own GraphQL API lists them to the view selector
            resp = page.request.post(f"{base}/graphql", data={
                "query": "query Q($name: String!) { dataset(name: $name) { savedViews { name } } }",
                "variables": {"name": dataset_name}})
            assert resp.ok, resp.text()
            names = {v["name"] for v in resp.json()["data"]["dataset"]["savedViews"]}
            assert {"changed_masks", "removed_or_vanished", "small_shrunk", "guard_flags"} <= names
            # original orange, refined blue, both switched on when the App opens
            config = _app_config(page, base, dataset_name)
            assert config["activeFields"]["paths"] == ["ground_truth", "refined"]
            assert {f["path"]: f["fieldColor"] for f in config["colorScheme"]["fields"]} == {
                "ground_truth": ORIGINAL_COLOR, "refined": REFINED_COLOR}
            # opening a saved view shows only its samples (small_shrunk: image 2 only)
            page.goto(view_url(base, dataset_name, "small_shrunk"), wait_until="load", timeout=90_000)
            _wait_for(page, lambda st: "small_shrunk" in st["text"] and st["lookers"] == 1, "the small_shrunk view")
            browser.close()
    finally:
        session.close()
    assert (artifacts / "curation_app.png").stat().st_size > 10_000
    shutil.copy(artifacts / "curation_app.png", tmp_path / "curation_app.png")


@pytest.mark.browser
def test_flicker_dataset_opens_with_its_overlays_in_playback_order(fo_env, dataset_name, tmp_path):
    from steadyseg.curation.appearance import FLICKER_COLOR, HEAT_COLOR, MASK_COLOR
    from steadyseg.curation.video import build_flicker_dataset
    from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder

    video = make_moving_shapes_video(num_frames=6, height=64, width=80, flicker_px=3, seed=3)
    paths = write_video_folder(video, tmp_path / "vid")
    build_flicker_dataset(paths["frames"], paths["predictions"], dataset_name, tmp_path / "out", window=2,
                          progress=False, video_sample=False)
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with _app_page(dataset_name, view="clip_in_order") as (page, base):
        page.goto(view_url(base, dataset_name, "clip_in_order"), wait_until="load", timeout=90_000)
        _wait_for(page, lambda st: "clip_in_order" in st["text"] and st["lookers"] >= 6, "the 6 frames in order")
        config = _app_config(page, base, dataset_name)
        assert config["activeFields"]["paths"] == ["masks", "flicker_map", "flicker_regions"]
        assert {f["path"]: f["fieldColor"] for f in config["colorScheme"]["fields"]} == {
            "masks": MASK_COLOR, "flicker_map": HEAT_COLOR, "flicker_regions": FLICKER_COLOR}
        assert config["colorScheme"]["colorscales"] == [{"path": "flicker_map", "name": "hot"}]
        _dismiss(page)
        time.sleep(2.0)
        page.screenshot(path=str(artifacts / "curation_video_app.png"))
    assert (artifacts / "curation_video_app.png").stat().st_size > 10_000


@contextlib.contextmanager
def _app_page(name: str, *, view: str | None = None):
    """The App serving dataset ``name`` (and saved ``view``) and a 1280×800 headless Chromium page: yields
    ``(page, base_url)``; the browser and the App are closed afterwards, whatever happens."""
    playwright = _playwright()
    port = _free_port()
    session = launch_app(name, port=port, view=view, wait=False, printer=lambda _: None)
    try:
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=HEADLESS_ARGS)
            try:
                yield browser.new_page(viewport={"width": 1280, "height": 800}), f"http://127.0.0.1:{port}"
            finally:
                browser.close()
    finally:
        session.close()


def _dismiss(page) -> None:
    """Close the App's notice banner when it shows one."""
    dismiss = page.get_by_text("Dismiss")
    if dismiss.count():
        dismiss.first.click()


_CLOCK = re.compile(r"(\d+):(\d\d\.\d\d) / (\d+):(\d\d\.\d\d)")


def _player_clock(page) -> tuple[float, float] | None:
    """(current time, duration) in seconds from the App player's clock ("0:00.29 / 0:01.00"), None when absent."""
    m = _CLOCK.search(page.evaluate("() => document.body.innerText"))
    return None if m is None else (60 * int(m[1]) + float(m[2]), 60 * int(m[3]) + float(m[4]))


def _screen(page):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(np.int16)


def _media_rect(page, width: int, height: int) -> tuple[float, float, float]:
    """(x0, y0, scale) of the video inside the player's canvas (the largest canvas, media fitted and centred)."""
    boxes = page.evaluate("() => [...document.querySelectorAll('canvas')].map(c => c.getBoundingClientRect())"
                          ".map(r => [r.x, r.y, r.width, r.height])")
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    scale = min(w / width, h / height)
    return x + (w - width * scale) / 2, y + (h - height * scale) / 2, scale


def _wait_until_still(page, timeout: float = 30.0) -> None:
    """Wait until two screenshots 1 s apart are equal (the App finished drawing); fail after ``timeout`` s."""
    import numpy as np

    deadline = time.monotonic() + timeout
    before = _screen(page)
    while True:
        time.sleep(1.0)
        now = _screen(page)
        if np.array_equal(before, now):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the App kept redrawing for {timeout} s")
        before = now


@pytest.mark.browser
def test_app_plays_the_flicker_video_with_its_overlays(fo_env, dataset_name, tmp_path):
    """The video dataset in the App: the player shows frame 1 with the mask overlay exactly on the mask, and plays."""
    import cv2
    import numpy as np

    from steadyseg.curation.appearance import FLICKER_COLOR, HEAT_COLOR, MASK_COLOR
    from steadyseg.curation.video import build_flicker_dataset
    from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder

    video = make_moving_shapes_video(num_frames=24, height=96, width=128, flicker_px=3, seed=3)
    paths = write_video_folder(video, tmp_path / "vid")
    ds = build_flicker_dataset(paths["frames"], paths["predictions"], dataset_name, tmp_path / "out", window=2,
                               progress=False)
    video_name = ds.info["steadyseg_video"]["video_dataset"]
    first = fo_env.load_dataset(video_name).first()
    mask = cv2.imread(first.frames[1].masks.mask_path, cv2.IMREAD_UNCHANGED) > 0  # frame 1's label map
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with _app_page(video_name) as (page, base):
        page.goto(view_url(base, video_name), wait_until="load", timeout=90_000)
        _wait_for(page, lambda st: "1" in st["counts"] and st["lookers"] == 1, "the video sample in the grid")
        config = _app_config(page, base, video_name)
        assert config["activeFields"]["paths"] == ["frames.masks", "frames.flicker_map", "frames.flicker_regions"]
        assert {f["path"]: f["fieldColor"] for f in config["colorScheme"]["fields"]} == {
            "frames.masks": MASK_COLOR, "frames.flicker_map": HEAT_COLOR, "frames.flicker_regions": FLICKER_COLOR}
        _dismiss(page)
        # open the sample: the modal's video player, paused on frame 1, its clock showing our duration (1 s)
        box = page.locator("[data-cy=looker]").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        deadline = time.monotonic() + 120  # the player loads the clip first: slow on a loaded 2-core machine
        while _player_clock(page) != (0.0, 1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the App's video player never showed 0:00.00 / 0:01.00; clock {_player_clock(page)}, "
                            f"url {page.url}, state {_page_state(page)}")
            time.sleep(0.5)
        _wait_until_still(page)  # frame 1's label PNGs are fetched and drawn
        text = page.evaluate("() => document.body.innerText")
        assert "avc1" in text and "video/mp4" in text, "the sidebar shows the metadata we wrote"
        page.screenshot(path=str(artifacts / "curation_video_player.png"))
        with_masks = _screen(page)
        # switch the masks off: what changes on screen is the mask overlay, and it lies on frame 1's mask
        page.locator('[data-cy="checkbox-frames.masks"]').last.click()
        x0, y0, scale = _media_rect(page, mask.shape[1], mask.shape[0])
        ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
        rows = np.round(y0 + (ys + 0.5) * scale).astype(int)
        cols = np.round(x0 + (xs + 0.5) * scale).astype(int)
        deadline, iou = time.monotonic() + 30, 0.0
        while iou <= 0.8:
            if time.monotonic() > deadline:
                pytest.fail(f"the overlay that the masks checkbox removes covers frame 1's mask with IoU {iou:.2f}")
            time.sleep(1.0)
            sampled = (np.abs(with_masks - _screen(page)).sum(axis=-1) > 30)[rows, cols]
            iou = (sampled & mask).sum() / max((sampled | mask).sum(), 1)
        page.locator('[data-cy="checkbox-frames.masks"]').last.click()
        # play (space bar): the clock runs
        page.keyboard.press("Space")
        deadline = time.monotonic() + 20
        while (_player_clock(page) or (0.0, 0.0))[0] < 0.25:
            if time.monotonic() > deadline:
                pytest.fail(f"the video did not play: clock {_player_clock(page)}")
            time.sleep(0.2)
    assert (artifacts / "curation_video_player.png").stat().st_size > 10_000
