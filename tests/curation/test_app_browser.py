"""The FiftyOne App in a real headless browser (Debian's chromium via Playwright): samples, saved views and the
App config (active label fields, colours) as the App's own API serves them.

Needs /usr/bin/chromium (scripts/install_browser.sh) and the playwright package (dev extra); fails, never skips,
when they are missing. The screenshots are kept in artifacts/curation_app.png and artifacts/curation_video_app.png.
"""

from __future__ import annotations

import os
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
    from steadyseg.curation.appearance import FLICKER_COLOR, MASK_COLOR
    from steadyseg.curation.video import build_flicker_dataset
    from steadyseg.datasets.synthetic import make_moving_shapes_video, write_video_folder

    playwright = _playwright()
    video = make_moving_shapes_video(num_frames=6, height=64, width=80, flicker_px=3, seed=3)
    paths = write_video_folder(video, tmp_path / "vid")
    build_flicker_dataset(paths["frames"], paths["predictions"], dataset_name, tmp_path / "out", window=2,
                          progress=False)
    port = _free_port()
    session = launch_app(dataset_name, port=port, view="clip_in_order", wait=False, printer=lambda _: None)
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        base = f"http://127.0.0.1:{port}"
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=HEADLESS_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(view_url(base, dataset_name, "clip_in_order"), wait_until="load", timeout=90_000)
            _wait_for(page, lambda st: "clip_in_order" in st["text"] and st["lookers"] >= 6, "the 6 frames in order")
            config = _app_config(page, base, dataset_name)
            assert config["activeFields"]["paths"] == ["masks", "flicker_map", "flicker_regions"]
            assert {f["path"]: f["fieldColor"] for f in config["colorScheme"]["fields"]} == {
                "masks": MASK_COLOR, "flicker_regions": FLICKER_COLOR}
            assert config["colorScheme"]["colorscales"] == [{"path": "flicker_map", "name": "hot"}]
            dismiss = page.get_by_text("Dismiss")
            if dismiss.count():
                dismiss.first.click()
            time.sleep(2.0)
            page.screenshot(path=str(artifacts / "curation_video_app.png"))
            browser.close()
    finally:
        session.close()
    assert (artifacts / "curation_video_app.png").stat().st_size > 10_000
