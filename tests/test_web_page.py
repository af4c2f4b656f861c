"""The web page in a real browser: Playwright driving Debian's chromium against a server this test starts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from service_process import free_port, serve

SCENE = Path(__file__).resolve().parent.parent / "examples" / "scene.png"
CHROMIUM = os.environ.get("INSTRUCTEDIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = os.environ.get("INSTRUCTEDIT_SCREENSHOTS")  # a folder to keep the screenshots in


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("INSTRUCTEDIT_REQUIRE_BROWSER"):
            pytest.fail("no chromium found and INSTRUCTEDIT_REQUIRE_BROWSER is set: apt-get install chromium")
        pytest.skip("no chromium on this machine (CI installs it): apt-get install chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture()
def server(tmp_path):
    port = free_port()
    process = serve(tmp_path / "data", port)
    yield f"http://127.0.0.1:{port}/"
    process.terminate()
    process.wait(10)


def _shot(page, tmp_path: Path, name: str) -> None:
    folder = Path(SHOTS) if SHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _edit(page, instruction: str, steps: int) -> None:
    page.fill("#instruction", instruction)
    page.click("#params-box summary") if not page.is_visible("[data-param=num_inference_steps]") else None
    page.fill("[data-param=num_inference_steps]", str(steps))
    page.click("#submit")


def test_upload_edit_second_turn_undo_and_reload(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#method option").count() >= 4 and page.locator("#examples img").count() == 4

    # an invalid upload shows the service's one-line message
    page.set_input_files("#file", files=[{"name": "bad.png", "mimeType": "image/png", "buffer": b"not a png"}])
    page.fill("#instruction", "make the star blue")
    page.click("#submit")
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "image" in page.text_content("#error")

    # upload, edit, watch progress, see the result
    page.evaluate("""() => { window.statuses = []; new MutationObserver(() =>
        window.statuses.push(document.getElementById('status').textContent))
        .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true}); }""")
    page.set_input_files("#file", str(SCENE))
    _edit(page, "make the star blue", 40)
    page.wait_for_selector("#download:not([hidden])", timeout=60_000)
    assert page.text_content("#error") == ""
    statuses = page.evaluate("window.statuses")
    assert any(s.startswith("running: step") for s in statuses) and statuses[-1].startswith("done in")
    assert page.evaluate("document.getElementById('result-img').naturalWidth") == 64
    page.fill("#slider", "50")
    _shot(page, tmp_path, "web_page")

    # the result becomes the next turn's input
    page.click("#next")
    _edit(page, "remove the circle", 4)
    page.wait_for_function("document.querySelectorAll('#history li').length === 2", timeout=60_000)
    page.wait_for_selector("#download:not([hidden])")
    assert "remove the circle" in page.text_content("#history li:nth-child(2)")

    # undo goes back a turn; the history survives a reload
    page.click("#undo")
    page.wait_for_function("document.querySelectorAll('#history li').length === 1")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    items = page.locator("#history li")
    assert items.count() == 1 and "make the star blue" in items.first.text_content()
    page.wait_for_selector("#download:not([hidden])")
    _shot(page, tmp_path, "after_reload")
    page.close()
