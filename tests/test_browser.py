"""The gallery in a real browser: headless Chromium driven by Playwright (no browser download;
the system's Debian ``chromium`` is used). Skipped, with the reason, when either is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgclust.config import ReportConfig
from imgclust.describe import ClusterSummary
from imgclust.report import ReportData, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: apt-get install -y chromium chromium-driver"
)
SHOTS = os.environ.get("IMGCLUST_SCREENSHOTS")


@pytest.fixture(scope="module")
def report(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportData]:
    """A report over the demo photos: 3 clusters, one with more than a member page holds
    (padded with missing files, shown as placeholders)."""
    photos = sorted(str(p) for p in demo_photos.rglob("*.jpg") if p.name != "broken.jpg")
    big = photos + [f"/nonexistent/extra-{i:03d}.jpg" for i in range(150)]  # placeholders
    n = len(big)
    labels = np.where(np.arange(n) < 10, 1, np.where(np.arange(n) < 20, 2, 0))
    rng = np.random.default_rng(0)
    distances = rng.random(n).astype(np.float32)
    outliers = distances > 0.9
    names = ["espresso / cup", "tabby / tiger cat", "space shuttle"]
    clusters = []
    for cid in range(3):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.argsort(distances[idx], kind="stable")]
        tops = ((f"{names[cid]}, x", 0.5),)
        clusters.append(ClusterSummary(cid, names[cid], tops, idx, distances[idx], int(idx[0])))
    ranks = np.empty(n, np.int64)
    for c in clusters:
        ranks[c.members] = np.arange(c.size)
    duplicate_of = np.full(n, -1)
    duplicate_of[clusters[1].members[[2, 5]]] = clusters[1].members[0]  # 2 collapse under rank 0
    data = ReportData(
        paths=big, labels=labels, ranks=ranks, distances=distances,
        image_top_classes=[(("espresso", 0.9),)] * n, clusters=clusters, rejected=[],
        model="efficientnet_lite0", features="embedding", outliers=outliers,
        coords=np.c_[labels * 10.0, np.zeros(n)] + rng.normal(size=(n, 2)),
        duplicate_of=duplicate_of,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("browser")
    write_report(out, data, ReportConfig(thumb_size=64, clusters_per_page=2, thumbs_per_row=20))
    return out, data


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--allow-file-access-from-files"])
        yield b
        b.close()


def _open(browser, url: str):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, errors


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=False)


def test_index_loads_filters_sorts_and_downloads(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, data = report
    page, errors = _open(browser, (out / "index.html").as_uri())
    assert page.locator(".card").count() == 3
    page.fill("#filter", "tiger")
    visible = page.locator(".card:not(.hidden)")
    # (the filter runs on a timer after the input: waited for, not slept for)
    sync_api.expect(visible).to_have_count(1)
    assert "tabby" in visible.inner_text()
    _shot(page, "index-filtered")
    page.fill("#filter", "")
    page.select_option("#sort", "name")
    order = page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.name)")
    assert order == sorted(names for names in order)
    page.check(".pick-cluster[data-cluster='1']")
    assert page.inner_text("#n-selected") == "10 selected"
    with page.expect_download() as dl:
        page.click("#download-txt")
    lines = Path(dl.value.path()).read_text("utf-8").split()
    assert sorted(lines) == sorted(data.paths[i] for i in data.clusters[1].members)
    _shot(page, "index-selected")
    assert errors == []


def test_anchor_lands_on_its_row_and_thumbnails_load(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, _ = report
    page, errors = _open(browser, (out / "clusters-002.html").as_uri() + "#row2")
    top = page.evaluate("document.getElementById('row2').getBoundingClientRect().top")
    assert 0 <= top < 120  # just under the sticky header
    page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.images].every(i => i.complete)")
    sizes = page.eval_on_selector_all("img", "is => is.map(i => i.naturalWidth)")
    assert sizes and all(w > 0 for w in sizes)
    _shot(page, "clusters-row2")
    assert errors == []


def test_big_cluster_is_paged_with_outlier_tail_and_selection(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, data = report
    assert (out / "cluster-0-2.html").exists() and not (out / "cluster-0-3.html").exists()
    page, errors = _open(browser, (out / "cluster-0-2.html").as_uri())
    assert page.locator(".tile").count() == data.clusters[0].size - 200
    assert page.locator(".tile.outlier").count() == int(
        data.outliers[data.clusters[0].members[200:]].sum()
    )
    assert page.locator(".tail-mark").count() == 1
    page.click("#select-page")
    with page.expect_download() as dl:
        page.click("#download-csv")
    rows = Path(dl.value.path()).read_text("utf-8").splitlines()
    assert rows[0] == "path,cluster" and len(rows) == 1 + data.clusters[0].size - 200
    page.evaluate("document.getElementById('outliers').scrollIntoView()")
    _shot(page, "members-outlier-tail")
    assert errors == []


def test_near_duplicates_collapse_into_a_tile_whose_badge_expands(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, data = report
    members = data.clusters[1].members
    page, errors = _open(browser, (out / "cluster-1-1.html").as_uri())
    assert page.locator(".tile").count() == len(members)  # all there, two collapsed
    assert page.locator(".tile:visible").count() == len(members) - 2
    badge = page.locator("#row1-0 .dup-badge")
    assert badge.inner_text() == "+2" and badge.get_attribute("aria-expanded") == "false"
    _shot(page, "members-collapsed")
    badge.click()
    assert page.locator(".tile:visible").count() == len(members)
    assert page.locator(".tile.dup:visible").count() == 2
    order = page.eval_on_selector_all(".tile:visible", "ts => ts.map(t => t.id)")
    assert order[:3] == ["row1-0", "row1-2", "row1-5"]  # the group sits together, leader first
    assert badge.get_attribute("aria-expanded") == "true"
    _shot(page, "members-expanded")
    badge.click()
    assert page.locator(".tile:visible").count() == len(members) - 2
    # a link to a collapsed image (from the map, say) opens its group
    page.goto((out / "cluster-1-1.html").as_uri() + "#row1-5")
    page.wait_for_load_state("load")
    assert page.locator("#row1-5").is_visible()
    assert errors == []


# -- the map ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportData]:
    """A map laid out as a run lays it out: 40 clusters (one of 260 photos, most of about
    20), every photo a small JPEG of its own colour, so zoomed in the view is full of
    thumbnails."""
    from PIL import Image

    from imgclust.describe import rank_members
    from imgclust.report.layout import fit_layout

    rng = np.random.default_rng(0)
    sizes = [260, 90, 60, 40] + [int(s) for s in rng.integers(8, 32, 36)]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n, d = len(labels), 24
    centroids = rng.normal(scale=3.0, size=(len(sizes), d)).astype(np.float32)
    feats = (centroids[labels] + rng.normal(size=(n, d))).astype(np.float16)
    distances = np.linalg.norm(feats.astype(np.float32) - centroids[labels], axis=1)
    layout = fit_layout(feats, centroids, labels, distances)
    coords = layout.place(feats, centroids, labels, distances)
    folder = tmp_path_factory.mktemp("crowded-photos")
    paths = []
    for i in range(n):
        colour = tuple(int(v) for v in rng.integers(30, 230, 3))
        path = folder / f"photo-{i:04d}.jpg"
        Image.new("RGB", (48, 36), colour).save(path, quality=80)
        paths.append(str(path))
    ranks = rank_members(labels, distances)
    words = ["espresso", "tabby", "shuttle", "volcano", "geyser", "kimono", "canoe", "harp"]
    clusters = []
    for cid in range(len(sizes)):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.argsort(ranks[idx])]
        name = f"{words[cid % 8]} / {words[(cid * 3 + 1) % 8]} {cid}"
        tops = ((f"{words[cid % 8]}, x", 0.5),)
        clusters.append(ClusterSummary(cid, name, tops, idx, distances[idx], int(idx[0])))
    data = ReportData(
        paths=paths, labels=labels, ranks=ranks, distances=distances,
        image_top_classes=[(("canoe", 0.625), ("paddle, boat paddle", 0.25))] * n,
        clusters=clusters, rejected=[], model="efficientnet_lite0", features="embedding",
        coords=coords,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("crowded")
    write_report(out, data, ReportConfig(thumb_size=96), workers=2)
    return out, data


def _open_map(browser, out: Path):  # type: ignore[no-untyped-def]
    page, errors = _open(browser, (out / "map.html").as_uri())
    page.wait_for_function("window.imgclustMapDrawn >= 1")
    return page, errors


def _settle(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until no zoom or pan is under way and the last frame is drawn."""
    page.wait_for_function("imgclustMapApi.settled()")
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _view_on(page, cluster: int, scale: float) -> None:  # type: ignore[no-untyped-def]
    """Centre the view on a cluster's middle at ``scale`` pixels a cell."""
    page.evaluate(
        """([id, s]) => { const a = imgclustMapApi, c = document.getElementById('map');
        const r = a.regions().find(r => r[0] === id);
        a.view.scale = s; a.view.x = c.clientWidth / 2 - r[1] * s;
        a.view.y = c.clientHeight / 2 - r[2] * s; a.draw(); }""",
        [cluster, scale],
    )
    _settle(page)


def _obstacles(page) -> list[list[float]]:  # type: ignore[no-untyped-def]
    """What floats over the map (buttons, legend, panel), as client rectangles."""
    return page.evaluate(
        """() => ['.map-controls', '#map-legend', '#map-info'].map(s => document.querySelector(s))
        .filter(e => e && !e.hidden).map(e => { const r = e.getBoundingClientRect();
        return [r.left, r.top, r.right, r.bottom]; })"""
    )


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _clicked_photo(page, data: ReportData) -> int:  # type: ignore[no-untyped-def]
    """The photo the info panel shows, from its link into the cluster page (-1: closed)."""
    if page.locator("#map-info").is_hidden():
        return -1
    href = page.get_attribute("#map-info a.map-in-cluster", "href") or ""
    cluster, rank = href.split("#row")[1].split("-")
    members = next(c.members for c in data.clusters if c.cluster_id == int(cluster))
    return int(members[int(rank)])


def test_map_clicks_on_crowded_thumbnails_open_that_photo(browser, crowded) -> None:  # type: ignore[no-untyped-def]
    out, data = crowded
    page, errors = _open_map(browser, out)
    _view_on(page, 0, 40.0)
    page.wait_for_function(
        "imgclustMapApi.stats.loading === 0 && imgclustMapApi.stats.thumbsDrawn > 0 &&"
        "imgclustMapApi.stats.thumbsDrawn >= imgclustMapApi.visiblePhotos().length",
        timeout=20_000,
    )
    thumbs = page.evaluate("imgclustMapApi.drawnThumbs()")
    assert len(thumbs) >= 150  # a crowded view
    # no two thumbnails on screen overlap, each inside its own cell
    for i, a in enumerate(thumbs):
        ra = [a[1], a[2], a[1] + a[3], a[2] + a[4]]
        for b in thumbs[i + 1 :]:
            assert not _overlap(ra, [b[1], b[2], b[1] + b[3], b[2] + b[4]]), (a, b)
    page.mouse.click(thumbs[0][1] + 3, thumbs[0][2] + 3)  # the panel opens, and stays
    assert _clicked_photo(page, data) == thumbs[0][0]
    covered = _obstacles(page)
    targets = [
        t
        for t in thumbs
        if not any(_overlap([t[1], t[2], t[1] + t[3], t[2] + t[4]], o) for o in covered)
    ]
    rng = np.random.default_rng(0)
    hits = 0
    for k in rng.integers(0, len(targets), 200).tolist():
        p, left, top, width, height = targets[k]
        page.mouse.click(left + rng.random() * width, top + rng.random() * height)
        hits += _clicked_photo(page, data) == p
    assert hits >= 0.95 * 200, hits
    assert errors == []


def test_map_names_every_region_on_screen_never_overlapping(browser, crowded) -> None:  # type: ignore[no-untyped-def]
    out, data = crowded
    page, errors = _open_map(browser, out)
    _settle(page)
    _shot(page, "map-whole")
    views = ["whole"]
    check = """() => { const a = imgclustMapApi, v = a.view, labels = {};
        const c = document.getElementById('map').getBoundingClientRect();
        document.querySelectorAll('.map-label').forEach(e => { if (!e.hidden) {
          const r = e.getBoundingClientRect(), size = parseFloat(getComputedStyle(e).fontSize);
          labels[e.dataset.region] = [r.left, r.top, r.right, r.bottom, size]; } });
        const regions = a.regions().map(([id, x, y, r]) =>
          [id, x * v.scale + v.x + c.left, y * v.scale + v.y + c.top, r * v.scale]);
        return { canvas: [c.left, c.top, c.right, c.bottom], regions, labels }; }"""

    def names_ok(where: str) -> int:
        got = page.evaluate(check)
        left, top, right, bottom = got["canvas"]
        shown = got["labels"]
        on_screen = 0
        for cid, x, y, r in got["regions"]:
            if x + r <= left or x - r >= right or y + r <= top or y - r >= bottom:
                continue
            on_screen += 1
            rect = shown.get(f"c{cid}")
            assert rect is not None, f"{where}: cluster {cid} is on screen, its name is not"
            assert left <= rect[0] and rect[2] <= right and top <= rect[1] and rect[3] <= bottom
            assert rect[4] >= 11  # legible
        boxes = list(shown.values())
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not _overlap(a, b), f"{where}: labels overlap: {a} {b}"
            for o in _obstacles(page):
                assert not _overlap(a, o), f"{where}: a label under {o}"
        return on_screen

    assert names_ok("whole map") == len(data.clusters)
    page.evaluate("imgclustMapApi.showRegion(1)")
    _settle(page)
    views.append("region")
    assert names_ok("a region") >= 1
    _view_on(page, 0, 50.0)
    assert names_ok("thumbnails") >= 1
    # panned to an edge, a region partly off screen keeps its name on screen
    page.evaluate("imgclustMapApi.fit()")
    _settle(page)
    for _ in range(3):
        page.keyboard.press("+")
        _settle(page)
    for _ in range(4):
        page.keyboard.press("ArrowLeft")
        _settle(page)
    assert names_ok("panned") >= 1
    assert errors == []


def test_map_zoom_is_bounded_smooth_and_keyed_and_fit_restores(browser, crowded) -> None:  # type: ignore[no-untyped-def]
    out, _ = crowded
    page, errors = _open_map(browser, out)
    _settle(page)
    api = "imgclustMapApi"
    base, bounds = page.evaluate(f"[{api}.view.base, {api}.bounds]")
    page.evaluate("""() => { window.scales = []; (function sample() {
        window.scales.push(imgclustMapApi.view.scale); requestAnimationFrame(sample); })(); }""")
    page.mouse.move(300, 300)  # maybe over empty ground: zooming in goes to the nearest region
    page.mouse.wheel(0, -100)
    page.wait_for_function("imgclustMapApi.view.scale > imgclustMapApi.view.base")
    _settle(page)
    step = page.evaluate(f"{api}.view.scale")
    between = page.evaluate(
        "([lo, hi]) => window.scales.filter(s => s > lo && s < hi)", [base * 1.0001, step * 0.9999]
    )
    # one notch: a smooth step (frames in between), not a jump; a loaded machine draws fewer
    assert step > base * 1.1 and len(between) >= 1
    assert between == sorted(between)
    for _ in range(40):
        page.mouse.wheel(0, -300)
    _settle(page)
    assert page.evaluate(f"{api}.view.scale") == pytest.approx(bounds["maxScale"])
    assert page.evaluate(f"{api}.visiblePhotos().length") > 0  # never lost on empty ground
    for _ in range(40):
        page.mouse.wheel(0, 300)
    _settle(page)
    assert page.evaluate(f"{api}.view.scale") == pytest.approx(bounds["minScale"])
    page.click("#map-reset")
    _settle(page)
    assert page.evaluate(f"{api}.view.scale") == pytest.approx(base)
    page.focus("#map")
    page.keyboard.press("+")
    _settle(page)
    assert page.evaluate(f"{api}.view.scale") == pytest.approx(base * 1.6)
    x = page.evaluate(f"{api}.view.x")
    page.keyboard.press("ArrowRight")
    _settle(page)
    assert page.evaluate(f"{api}.view.x") < x
    for _ in range(12):  # far past the map's edge, zoomed right in
        page.keyboard.press("+")
    for _ in range(60):
        page.keyboard.press("ArrowDown")
    page.wait_for_timeout(300)
    _settle(page)
    _settle(page)
    assert page.evaluate(f"{api}.visiblePhotos().length") > 0
    page.keyboard.press("0")
    _settle(page)
    assert page.evaluate(f"{api}.view.scale") == pytest.approx(base)
    assert errors == []


def test_map_pinch_zooms_about_the_fingers_within_the_bounds(browser, crowded) -> None:  # type: ignore[no-untyped-def]
    """Two fingers (real touch input, through the DevTools protocol) and a trackpad's pinch
    (a wheel with ctrlKey) zoom about the gesture's middle, never past the wheel's bounds,
    and a pinch never opens a photo."""
    out, _ = crowded
    page = browser.new_page(viewport={"width": 1280, "height": 800}, has_touch=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((out / "map.html").as_uri())
    page.wait_for_function("window.imgclustMapDrawn >= 1")
    _settle(page)
    api = "imgclustMapApi"
    base, bounds = page.evaluate(f"[{api}.view.base, {api}.bounds]")
    _, rx, ry, _ = page.evaluate(f"{api}.regions()")[0]
    view = page.evaluate(f"{api}.view")
    box = page.locator("#map").bounding_box()
    assert box is not None
    mx, my = rx * view["scale"] + view["x"] + box["x"], ry * view["scale"] + view["y"] + box["y"]
    cdp = page.context.new_cdp_session(page)

    def fingers(kind: str, spread: float) -> None:
        points = [{"x": mx - spread, "y": my, "id": 0}, {"x": mx + spread, "y": my, "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    fingers("touchStart", 20)
    for spread in range(25, 61, 5):  # fingers apart: 3 times as far
        fingers("touchMove", spread)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    _settle(page)
    scale, vx, vy = page.evaluate(f"[{api}.view.scale, {api}.view.x, {api}.view.y]")
    assert scale == pytest.approx(base * 3, rel=0.02)
    # the point between the fingers stayed where it was
    assert rx * scale + vx + box["x"] == pytest.approx(mx, abs=2)
    assert ry * scale + vy + box["y"] == pytest.approx(my, abs=2)
    assert page.locator("#map-info").is_hidden()  # a pinch is no click
    for _ in range(6):  # far past the most zoom there is
        fingers("touchStart", 10)
        fingers("touchMove", 200)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    _settle(page)
    assert page.evaluate(f"{api}.view.scale") == pytest.approx(bounds["maxScale"])
    assert page.evaluate(f"{api}.visiblePhotos().length") > 0
    page.click("#map-reset")
    _settle(page)
    # a trackpad pinch: wheel events with ctrlKey, which the page must not take for its zoom
    wheel = """([x, y, dy, n]) => { const c = document.getElementById('map'); let kept = 0;
        for (let i = 0; i < n; i++) { const e = new WheelEvent('wheel', {deltaY: dy, ctrlKey: true,
          clientX: x, clientY: y, cancelable: true, bubbles: true});
          c.dispatchEvent(e); kept += e.defaultPrevented; } return kept; }"""
    assert page.evaluate(wheel, [mx, my, -10, 5]) == 5
    _settle(page)
    assert page.evaluate(f"{api}.view.scale") == pytest.approx(base * np.exp(0.5), rel=0.01)
    page.evaluate(wheel, [mx, my, 40, 50])  # pinched shut, far past the least zoom
    _settle(page)
    assert page.evaluate(f"{api}.view.scale") == pytest.approx(bounds["minScale"])
    assert page.evaluate(f"{api}.stats.pinches") > 0
    assert errors == []
    page.close()


def test_map_hover_and_click_show_the_photo_and_its_cluster(browser, crowded) -> None:  # type: ignore[no-untyped-def]
    out, data = crowded
    page, errors = _open_map(browser, out)
    page.evaluate("imgclustMapApi.showRegion(2)")
    _settle(page)
    _shot(page, "map-zoomed-region")
    target = int(data.clusters[2].members[3])
    x, y = page.evaluate(f"imgclustMapApi.screenOf({target})")
    page.mouse.move(x, y)
    page.wait_for_function(
        "(t => !t.hidden && !t.textContent.includes('\u2026'))(document.getElementById('map-tip'))"
    )
    tip = page.inner_text("#map-tip")
    assert f"photo-{target:04d}.jpg" in tip and "rank 3" in tip and "canoe  0.625" in tip
    assert data.clusters[2].name in tip
    page.mouse.click(x, y)
    assert _clicked_photo(page, data) == target
    page.wait_for_function(
        "document.querySelector('#map-info .map-name').textContent.includes('photo-')"
    )
    assert page.inner_text("#map-info .map-name") == f"photo-{target:04d}.jpg"
    assert data.clusters[2].name in page.inner_text("#map-info")
    opened = page.get_attribute("#map-info a.map-open", "href") or ""
    assert opened.startswith("file://") and opened.endswith(f"photo-{target:04d}.jpg")
    _shot(page, "map-click-panel")
    page.click("#map-info a.map-in-cluster")
    page.wait_for_load_state("load")
    assert page.evaluate("document.getElementById(location.hash.slice(1)) !== null")
    assert errors == []


def test_map_of_a_run_that_was_laid_out_before_the_lattice(browser, report) -> None:  # type: ignore[no-untyped-def]
    """``report`` has loose coordinates (as an older layout made): the map settles them on
    cells of their own, draws, and a click on a photo opens it in its cluster."""
    out, data = report
    page, errors = _open_map(browser, out)
    _settle(page)
    n = page.evaluate("imgclustMapApi.n")
    assert n == len(data.paths)
    x, y = page.evaluate("imgclustMapApi.screenOf(5)")
    page.mouse.click(x, y)
    href = page.get_attribute("#map-info a.map-in-cluster", "href") or ""
    assert href.startswith("cluster-1-1.html#row1-")
    assert errors == []


def test_map_loads_thumbnails_a_few_at_a_time_even_when_the_loader_is_late(
    browser, report, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The map's first frame may come before gallery.js has run (seen on a slow machine);
    thumbnails must still appear once it has. Here gallery.js is held back until a frame is
    drawn. Photos without a thumbnail (missing files) stay coloured cells."""
    out, data = report
    late = tmp_path / "late"
    shutil.copytree(out, late)
    html = (late / "map.html").read_text()
    held = """<script>(function hold() {
      if (!window.imgclustMapDrawn) { requestAnimationFrame(hold); return; }
      var s = document.createElement("script"); s.src = "gallery.js"; document.body.append(s);
    }());</script>"""
    assert '<script src="gallery.js"></script>' in html
    (late / "map.html").write_text(html.replace('<script src="gallery.js"></script>', held))
    page, errors = _open_map(browser, late)
    _view_on(page, 1, 30.0)  # cluster 1: ten real photos
    page.wait_for_function("imgclustMapApi.stats.thumbsDrawn >= 8", timeout=20_000)
    stats = page.evaluate("imgclustMapApi.stats")
    assert stats["maxLoading"] <= 12  # the cap on images in flight
    n_real = sum(1 for p in data.paths if Path(p).exists())
    assert stats["thumbsDrawn"] <= n_real
    assert errors == []
