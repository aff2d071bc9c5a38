"""How long a 100k-image report takes to write and to open in headless Chromium.

Synthetic: 100,000 images in 100 clusters of 1280-d features. The files do not exist (tiles
show placeholders), except 300 neighbours on the map of the largest cluster's first member:
small JPEGs, so the map has real thumbnails to draw when zoomed in there. Prints the time to write
the report, to open index.html and map.html (load event, first map frame), and the cost of a
filter keystroke, a map pan redraw, a click lookup, and of zooming in until thumbnails are
drawn (time until all in view are drawn, and a pan redraw with them).

    PYTHONPATH=src python bench/bench_report_100k.py [N]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from imgclust.config import ReportConfig
from imgclust.describe import ClusterSummary, rank_members
from imgclust.report import ReportData, write_report
from imgclust.report.layout import fit_layout

N_REAL = 300


def synthetic(n: int, photos: Path, k: int = 100, d: int = 1280) -> ReportData:
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(k, d)).astype(np.float32)
    labels = np.sort(rng.zipf(1.3, n) % k).astype(np.int64)
    feats = centroids[labels] + rng.normal(scale=0.6, size=(n, d)).astype(np.float32)
    distances = np.linalg.norm(feats - centroids[labels], axis=1)
    t = time.perf_counter()
    layout = fit_layout(feats, centroids, labels, distances)
    coords = layout.place(feats, centroids, labels, distances)
    print(f"layout of {n:,} images: {time.perf_counter() - t:.2f} s")
    clusters = []
    for cid in np.unique(labels):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.argsort(distances[idx], kind="stable")]
        tops = ((f"class {cid} word{cid % 7}, synonym", 0.4),)
        clusters.append(
            ClusterSummary(int(cid), f"cluster {cid}", tops, idx, distances[idx], int(idx[0]))
        )
    paths = [f"/nonexistent/photos/{i // 1000:03d}/img-{i:07d}.jpg" for i in range(n)]
    from PIL import Image

    photos.mkdir(parents=True, exist_ok=True)
    centre = coords[max(clusters, key=lambda c: c.size).members[0]]
    near = np.argsort(np.linalg.norm(coords - centre, axis=1))[:N_REAL]  # on the map
    for rank, i in enumerate(near.tolist()):
        paths[i] = str(photos / f"real-{rank:03d}.jpg")
        colour = tuple(int(v) for v in rng.integers(40, 230, 3))
        Image.new("RGB", (96, 72), colour).save(paths[i])
    return ReportData(
        paths=paths,
        labels=labels,
        ranks=rank_members(labels, distances),
        distances=distances,
        image_top_classes=[(("espresso", 0.9),)] * n,
        clusters=clusters,
        rejected=[],
        model="synthetic",
        features="embedding",
        outliers=distances > np.percentile(distances, 97),
        coords=coords,
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    out = Path(tempfile.mkdtemp(prefix="imgclust-bench-"))
    data = synthetic(n, out / "photos")
    try:
        t = time.perf_counter()
        write_report(out, data, ReportConfig(), workers=2)
        print(f"write_report: {time.perf_counter() - t:.1f} s, "
              f"{sum(1 for _ in out.glob('*.html')):,} pages, "
              f"map-data.js {(out / 'map-data.js').stat().st_size / 1e6:.1f} MB")  # fmt: skip
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            t = time.perf_counter()
            page.goto((out / "index.html").as_uri())
            page.wait_for_load_state("load")
            print(f"index.html load: {time.perf_counter() - t:.2f} s")
            t = time.perf_counter()
            page.fill("#filter", "word3")
            page.wait_for_function("document.getElementById('shown').textContent !== ''")
            print(f"filter keystroke → result: {(time.perf_counter() - t) * 1e3:.0f} ms "
                  f"({page.inner_text('#shown')})")  # fmt: skip
            t = time.perf_counter()
            page.goto((out / "map.html").as_uri())
            page.wait_for_function("window.imgclustMapDrawn >= 1", timeout=120_000)
            print(f"map.html load + first frame of {n:,} points: {time.perf_counter() - t:.2f} s")
            frame = page.evaluate(
                """() => new Promise(done => {
                  const before = window.imgclustMapDrawn, t0 = performance.now();
                  imgclustMapApi.view.x += 40;
                  window.dispatchEvent(new Event('resize'));
                  (function wait() {
                    if (window.imgclustMapDrawn > before) done(performance.now() - t0);
                    else requestAnimationFrame(wait);
                  })();
                })"""
            )
            print(f"map pan redraw: {frame:.0f} ms")
            lookup = page.evaluate(
                """() => { const t0 = performance.now();
                  for (let i = 0; i < 100; i++) imgclustMapApi.nearest(Math.random() * 50,
                    Math.random() * 50, 0.5);
                  return (performance.now() - t0) / 100; }"""
            )
            print(f"click lookup: {lookup:.2f} ms")
            first = next(i for i, p in enumerate(data.paths) if p.endswith("real-000.jpg"))
            zoom = page.evaluate(
                """([px, py]) => new Promise(done => {
                  const api = imgclustMapApi, v = api.view, c = document.getElementById('map');
                  const t0 = performance.now();
                  let f = 1;
                  (function step() {
                    const s = api.stats, settled = s.loading === 0 && s.loaded > 0;
                    if ((s.inView > 0 && s.inView <= 400 && settled && s.thumbsDrawn > 0 &&
                         s.thumbsDrawn >= s.loaded) || performance.now() - t0 > 30000)
                      return done([performance.now() - t0, f, s.inView, s.thumbsDrawn,
                                   s.maxLoading]);
                    if (api.stats.inView > 400 || api.stats.inView === 0) {
                      f *= 1.5; v.scale = v.base * f;
                      v.x = c.clientWidth / 2 - px * v.scale;
                      v.y = c.clientHeight / 2 - py * v.scale;
                      api.draw();
                    }
                    setTimeout(step, 16);
                  })();
                })""",
                [float(c) for c in data.coords[first]],
            )
            print(f"zoom to thumbnails: {zoom[0]:.0f} ms to x{zoom[1]:.0f}, {zoom[2]} points "
                  f"in view, {zoom[3]} thumbnails drawn, <= {zoom[4]} loading at once")  # fmt: skip
            frame = page.evaluate(
                """() => new Promise(done => {
                  const before = window.imgclustMapDrawn, t0 = performance.now();
                  imgclustMapApi.view.x += 40;
                  imgclustMapApi.draw();
                  (function wait() {
                    if (window.imgclustMapDrawn > before) done(performance.now() - t0);
                    else requestAnimationFrame(wait);
                  })();
                })"""
            )
            print(f"map pan redraw with thumbnails: {frame:.0f} ms "
                  f"({page.evaluate('imgclustMapApi.stats.thumbsDrawn')} drawn)")  # fmt: skip
            browser.close()
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
