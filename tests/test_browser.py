"""The box-drag demo in a real browser: Voila serves notebooks/07 (tiny profile), headless Debian
Chromium driven by Playwright drags a box over an object, and the refined view and status must follow."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dissam.repro import config

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = config.REPO_ROOT / "notebooks" / "07_box_drag_demo.ipynb"
ARTIFACTS = config.REPO_ROOT / "runs" / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with code {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"voila did not listen on port {port} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A runs folder holding the tiny profile's data and trained refiner (trained here when missing;
    ``DISSAM_TEST_RUNS`` names a folder to reuse between sessions)."""
    from dissam.repro.pipeline import ensure_refiner

    runs = Path(os.environ.get("DISSAM_TEST_RUNS") or tmp_path_factory.getbasetemp() / "dissam-runs-tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(config, "RUNS_ROOT", runs)
        profile = config.get_profile("tiny")
        ensure_refiner(profile, progress=False)
        from dissam.widget import demo_image
        image, gt = demo_image(profile)
    return runs, image, gt


@pytest.fixture()
def voila(tiny_runs, tmp_path):
    """Voila serving the demo notebook on 127.0.0.1 with DISSAM_PROFILE=tiny; killed afterwards."""
    runs, _, _ = tiny_runs
    port = _free_port()
    env = {**os.environ, "DISSAM_PROFILE": "tiny", "DISSAM_RUNS": str(runs), "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "voila.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
         "--show_tracebacks=True", "--VoilaExecutor.timeout=240"],
        cwd=config.REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_port(port, proc, timeout=60)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # voila and the kernel it started (its own session)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
        log.close()


def test_drag_a_box_in_voila(tiny_runs, voila):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (run `bash scripts/ensure_chromium.sh` as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from dissam.data.prompts import box_from_mask

    _, image, gt = tiny_runs
    h, w = gt.shape
    x0, y0, x1, y1 = box_from_mask(gt)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(voila, timeout=60_000, wait_until="domcontentloaded")
            # Voila runs the notebook, then renders the widgets: wait (bounded) for the demo to appear.
            picture = page.locator(".dissam-bbox img").first
            picture.wait_for(state="visible", timeout=240_000)
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=picture.element_handle(),
                                   timeout=30_000)
            refined = page.locator("img.dissam-refined").first
            status = page.locator(".dissam-status").first
            refined.wait_for(state="visible")
            before = refined.get_attribute("src")
            assert "Drag a box" in status.inner_text()

            page.locator(".dissam-demo").first.scroll_into_view_if_needed()
            frame = picture.bounding_box()
            assert frame["y"] >= 0 and frame["y"] + frame["height"] <= page.viewport_size["height"]
            sx, sy = frame["width"] / w, frame["height"] / h
            margin = 1.5  # image pixels around the tight box, as a user would drag
            start = (frame["x"] + (x0 - margin) * sx, frame["y"] + (y0 - margin) * sy)
            end = (frame["x"] + (x1 + margin) * sx, frame["y"] + (y1 + margin) * sy)
            page.mouse.move(*start)
            page.mouse.down()
            page.mouse.move(*end, steps=12)
            page.mouse.up()

            page.wait_for_function("before => document.querySelector('img.dissam-refined').src !== before",
                                   arg=before, timeout=60_000)
            page.wait_for_function("() => document.querySelector('.dissam-status').innerText.includes('object 1')",
                                   timeout=60_000)
            page.wait_for_timeout(300)  # let the new PNG paint before the screenshot
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.locator(".dissam-demo").first.screenshot(path=str(ARTIFACTS / "browser_demo.png"))
            text = status.inner_text()
            assert refined.get_attribute("src") != before
            assert "1 object" in text and "object 2" not in text
            coarse_px = int(re.search(r"stage 1: (\d+) px", text).group(1))
            refined_px = int(re.search(r"refined: (\d+) px", text).group(1))
            box_area = (x1 - x0) * (y1 - y0)
            assert 0 < coarse_px <= (x1 - x0 + 4) * (y1 - y0 + 4)  # stage 1 answered the dragged box
            assert refined_px <= h * w and box_area > 0
            drawn = re.search(r"box \((\d+), (\d+), (\d+), (\d+)\)", text)
            got = tuple(int(v) for v in drawn.groups())  # the box reached Python in image pixels
            assert all(abs(a - b) <= 3 for a, b in zip(got, (x0, y0, x1, y1))), (got, (x0, y0, x1, y1))
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser_demo_failure.png"))
            raise
        finally:
            browser.close()
