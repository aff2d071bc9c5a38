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
        said = page.inner_text("#message")  # (the move it undid, not the edit now last)
        assert said.startswith("undone: move 3 photos"), said
        assert errors == []
        browser.close()
    assert by_path(out)[moved[0]]["cluster"] == "0"  # written when the app stopped
    assert "Lisbon trip" in (out / "index.html").read_text("utf-8")


def test_the_app_fits_a_phones_width(tmp_path: Path) -> None:
    """At 420 px the page does not scroll sideways and the photos get the width (they were
    squeezed into ~80 px beside the cluster list)."""
    out, _ = make_out(tmp_path)
    with ReviewServer(out) as server, sync_api.sync_playwright() as p:
        server.start()
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 420, "height": 900})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready]")
        _shot(page, "review-phone")
        wide = page.evaluate("document.documentElement.scrollWidth")
        view = page.evaluate("document.querySelector('#view').getBoundingClientRect().width")
        name = page.evaluate("document.querySelector('#name').getBoundingClientRect().right")
        browser.close()
    assert wide <= 420 and view >= 360 and name <= 420, (wide, view, name)


def _page(p, server):  # type: ignore[no-untyped-def]
    """A page on ``server``'s app, loaded, with its console errors collected."""
    browser = p.chromium.launch(executable_path=CHROMIUM)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready]")
    return browser, page, errors


def _scene_cluster(out: Path, scene: str) -> str:
    ids = {r["cluster"] for p, r in by_path(out).items() if f"/{scene}/" in p}
    assert len(ids) == 1, f"{scene} is one cluster"
    return ids.pop()


@pytest.mark.slow
def test_edits_carry_over_a_run_on_a_grown_folder(demo_photos: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imgclust.cli import app

    photos, out = tmp_path / "photos", tmp_path / "out"
    for scene in ("coffee", "chelsea", "rocket"):
        shutil.copytree(demo_photos / scene, photos / scene)
    run = ["run", str(photos), "--out", str(out), "--quiet", "--workers", "0", "--k"]
    assert CliRunner().invoke(app, [*run, "3"]).exit_code == 0
    coffee, rocket = _scene_cluster(out, "coffee"), _scene_cluster(out, "rocket")

    with ReviewServer(out) as server, sync_api.sync_playwright() as p:
        server.start()
        browser, page, errors = _page(p, server)
        page.click(f"#clusters li[data-id='{coffee}']")
        page.keyboard.press("r")
        page.keyboard.press("Control+A")
        page.keyboard.type("Lisbon trip")
        page.keyboard.press("Enter")
        _until(page, f"document.querySelector(\"#clusters li[data-id='{coffee}']\")"
                     ".innerText.includes('Lisbon')")  # fmt: skip
        page.click(f"#clusters li[data-id='{rocket}']")
        _until(page, "document.querySelectorAll('#photos .tile').length === 8")
        tile = page.locator("#photos .tile").nth(0)
        moved = tile.get_attribute("data-path")
        tile.click()
        page.select_option("#target", coffee)
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("m")
        _until(page, "document.querySelectorAll('#photos .tile').length === 7")
        assert errors == []
        browser.close()
    assert moved is not None

    # The folder grows by a scene and `imgclust run` re-clusters it.
    shutil.copytree(demo_photos / "moon", photos / "moon")
    result = CliRunner().invoke(app, [*run, "4"])
    assert result.exit_code == 0, result.output
    assert "renamed 'Lisbon trip' carried" in " ".join(result.output.split())
    lisbon = by_path(out)[moved]["cluster"]
    assert by_path(out)[moved]["cluster_name"] == "Lisbon trip"

    with ReviewServer(out) as server, sync_api.sync_playwright() as p:
        server.start()
        browser, page, errors = _page(p, server)
        item = page.locator(f"#clusters li[data-id='{lisbon}']")
        assert "Lisbon trip" in item.inner_text()
        assert page.locator("#clusters li").count() == 4  # the moon is a cluster of its own
        item.click()
        _until(page, "document.querySelectorAll('#photos .tile').length === 9")
        shown = page.eval_on_selector_all("#photos .tile", "ts => ts.map(t => t.dataset.path)")
        assert moved in shown  # the moved rocket is still with the coffee
        assert page.locator("#history li").count() == 2  # the carried edits, undoable
        _shot(page, "review-carried")
        assert errors == []
        browser.close()
