"""The review app's page in headless Chromium (Playwright on the system's Debian chromium),
against a real server: a rename and a move done with the keyboard and clicks, then undo."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="pip install 'imgclust[review]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")
from test_review import by_path, make_out  # noqa: E402

from imgclust.review.app import ReviewServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: apt-get install -y chromium chromium-driver"
)
SHOTS = os.environ.get("IMGCLUST_SCREENSHOTS")


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=False)


def _until(page, script: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``script`` is true in the page (``wait_for_function`` evaluates strings,
    which the app's Content-Security-Policy forbids; ``evaluate`` goes through DevTools)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        page.wait_for_timeout(25)


def test_rename_and_move_with_keys_and_clicks(tmp_path: Path) -> None:
    out, _ = make_out(tmp_path)
    with ReviewServer(out) as server, sync_api.sync_playwright() as p:
        server.start()
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on(
            "console",
            lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready]")
        assert page.url == f"http://127.0.0.1:{server.port}/"  # the token left the address
        assert page.locator("#clusters li").count() == 3
        assert page.locator("#photos .tile").count() == 12  # the first cluster is shown
        _shot(page, "review-open")

        page.keyboard.press("r")  # rename the cluster shown
        page.keyboard.press("Control+A")
        page.keyboard.type("Lisbon trip")
        page.keyboard.press("Enter")
        _until(page, "document.querySelector('#clusters li').innerText.includes('Lisbon')")
        assert server.review.current.names[0] == "Lisbon trip"

        tiles = page.locator("#photos .tile")
        moved = [tiles.nth(i).get_attribute("data-path") for i in range(3)]
        tiles.nth(0).click()
        tiles.nth(2).click(modifiers=["Shift"])  # a range: three photos
        assert page.inner_text("#n-selected") == "3 selected"
        page.select_option("#target", "2")
        page.evaluate("document.activeElement.blur()")
        _shot(page, "review-selected")
        page.keyboard.press("m")  # move them to #2
        _until(page, "document.querySelectorAll('#photos .tile').length === 9")
        assert [c.size for c in server.review.current.named] == [9, 10, 11]
        page.keyboard.press("j")
        page.keyboard.press("j")  # to cluster #2: the moved photos are there
        _until(page, "document.querySelectorAll('#photos .tile').length === 11")
        shown = page.eval_on_selector_all("#photos .tile", "ts => ts.map(t => t.dataset.path)")
        assert set(moved) <= set(shown)
        page.fill("#search", "red-0")
        _until(page, "document.querySelector('#size').innerText.includes('match')")
        _shot(page, "review-search")
        page.fill("#search", "")
        page.keyboard.press("Escape")  # out of the search box
        page.keyboard.press("Control+z")  # undo the move
        _until(
            page,
            "!document.querySelector('#undo').disabled && "
            "document.querySelector('#history').children.length === 1",
        )
        assert [c.size for c in server.review.current.named] == [12, 10, 8]
        _until(page, "document.querySelectorAll('#photos .tile').length === 12")
        _shot(page, "review-undone")
        assert errors == []
        browser.close()
    assert by_path(out)[moved[0]]["cluster"] == "0"  # written when the app stopped
    assert "Lisbon trip" in (out / "index.html").read_text("utf-8")
