"""How ``imgclust review`` copes with a 100,000-photo collection.

Synthetic: 100,000 images in 100 clusters (Zipf sizes) of 1280-d float16 features, saved,
exported and reported as a run would (the photo files do not exist: tiles show
placeholders). Then the real app on a free loopback port, driven over HTTP:

* time to first page: from starting the app (lock, load the saved clustering and the index,
  journal) until the page, its script, ``api/state`` and the first cluster's photos are in;
* a merge of two clusters and a move of 500 photos: the answer (edit applied in memory and
  journalled) and, separately, until the CSV/Parquet exports, the static report and
  ``model.npz`` on disk show it;
* an undo, and a restart on the edited folder (the journal replayed);
* the carry-over into a later run: a run's clustering of the folder grown by 1% (the same
  clusters, their ids reversed), the edits carried onto it (:mod:`imgclust.review.carry`)
  and written (new review base, journal, index, ``model.npz``), then the app reopened on it.

    PYTHONPATH=src python bench/review_100k.py [N]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from imgclust.clustering import Clustering
from imgclust.describe import ClusterSummary, ImageTopClasses, rank_members
from imgclust.models import imagenet_class_names
from imgclust.report import write_exports, write_report
from imgclust.review.app import ReviewServer
from imgclust.state import feature_index, save_clustering
from imgclust.steps import output_folder


def synthetic(out: Path, n: int, k: int = 100, d: int = 1280) -> None:
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(k, d)).astype(np.float32)
    labels = np.sort(rng.zipf(1.3, n) % k).astype(np.int64)
    index, feats = feature_index(n, d)
    for start in range(0, n, 10_000):
        lab = labels[start : start + 10_000]
        noise = rng.normal(scale=0.6, size=(len(lab), d)).astype(np.float32)
        feats[start : start + len(lab)] = centroids[lab] + noise
    distances = np.linalg.norm(feats.astype(np.float32) - centroids[labels], axis=1)
    names = imagenet_class_names()
    clusters = []
    for cid in range(k):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.argsort(distances[idx], kind="stable")]
        tops = ((names[cid], 0.4), (names[cid + 100], 0.1))
        clusters.append(
            ClusterSummary(cid, f"cluster {cid}", tops, idx, distances[idx], int(idx[0]))
        )
    class_ids = np.stack([labels, labels + 100, labels + 200], axis=1)
    scores = np.tile(np.array([0.5, 0.2, 0.1], np.float32), (n, 1))
    c = Clustering(
        paths=[f"/nonexistent/photos/{i // 1000:03d}/img-{i:07d}.jpg" for i in range(n)],
        labels=labels, ranks=rank_members(labels, distances), distances=distances,
        image_top_classes=ImageTopClasses(class_ids, scores, names), clusters=clusters,
        rejected=[], model="efficientnet_lite0", features="embedding",
        outliers=np.zeros(n, bool), duplicate_of=np.full(n, -1),
        store_dir=str(out / ".imgclust" / "store"), centroids=centroids,
        fences=np.full(k, np.inf, np.float32),
    )  # fmt: skip
    with output_folder(out, "run") as marker:
        save_clustering(marker, c, index)
        write_exports(out, c)
        write_report(out, c, c.report)


def grown_run(marker: Path, n_new: int) -> tuple[Clustering, object, np.ndarray]:
    """What a run on the folder grown by ``n_new`` photos might give: the review base's
    photos in the same clusters with their ids reversed, and ``n_new`` photos near the
    centres; with its similarity index and that index's storage (the clustered features)."""
    from dataclasses import replace

    from imgclust.clustering import regroup
    from imgclust.review.session import _storage
    from imgclust.state import load_clustering, read_index

    base_dir = next(marker.glob("review-base*"))
    base = load_clustering(base_dir)
    old = _storage(read_index(base_dir, len(base.paths), saved=base))
    rng = np.random.default_rng(1)
    k, (n, d) = base.k, old.shape
    extra = rng.integers(0, k, n_new)
    index, feats = feature_index(n + n_new, d)
    feats[:n] = old
    feats[n:] = base.centroids[extra] + rng.normal(scale=0.6, size=(n_new, d))
    labels = (k - 1 - np.concatenate([base.labels, extra])).astype(np.int64)
    distances = np.linalg.norm(
        feats.astype(np.float32) - base.centroids[k - 1 - labels], axis=1
    ).astype(np.float32)
    ids, scores = base.top_class_arrays()
    names = imagenet_class_names()
    template = [
        ClusterSummary(k - 1 - c.cluster_id, c.name, c.top_classes, c.members, c.distances, 0)
        for c in base.named
    ]
    run = replace(
        base,
        paths=[*base.paths, *(f"/nonexistent/new/img-{i:07d}.jpg" for i in range(n_new))],
        labels=labels, ranks=rank_members(labels, distances), distances=distances,
        image_top_classes=ImageTopClasses(
            np.concatenate([ids, ids[:n_new]]), np.concatenate([scores, scores[:n_new]]), names
        ),
        clusters=regroup(sorted(template, key=lambda c: c.cluster_id), labels, distances),
        outliers=np.zeros(n + n_new, bool), duplicate_of=np.full(n + n_new, -1),
        centroids=np.ascontiguousarray(base.centroids[::-1]), columns={},
    )  # fmt: skip
    return run, index, feats


def carry_over(out: Path, results: dict[str, float]) -> None:
    """The edits carried onto a grown run, written as a run writes them, and the app
    reopened on the result."""
    from imgclust.review.carry import carry_review, save_carried

    marker = out / ".imgclust"
    with output_folder(out, "run", create=False):
        run, index, feats = timed("carry: a grown run's clustering (made up, +1%)",
                                  lambda: grown_run(marker, len(feats_rows(marker)) // 100),
                                  results)  # fmt: skip
        carry = timed("carry: match and translate the edits",
                      lambda: carry_review(marker, run, feats), results)  # fmt: skip
        assert carry is not None and carry.carried is not None
        for note in carry.notes:
            print("   ", note)
        carried = carry.carried
        timed("carry: exports + report of the carried state",
              lambda: (write_exports(out, carried.clustering),
                       write_report(out, carried.clustering, run.report)), results)  # fmt: skip
        timed("carry: new base, journal, index.faiss, model.npz written",
              lambda: save_carried(marker, carried, index), results)  # fmt: skip
    server = timed("carry: the app reopened on the carried state",
                   lambda: ReviewServer(out).__enter__(), results)  # fmt: skip
    assert server.review.version == len(carried.records) and server.review.can_undo
    server.__exit__(None, None, None)


def feats_rows(marker: Path) -> list[str]:
    from imgclust.state import load_clustering

    return list(load_clustering(marker).paths)


def timed(label: str, fn, results: dict[str, float]):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    value = fn()
    results[label] = time.perf_counter() - t
    print(f"{label}: {results[label]:.3f} s", flush=True)
    return value


def browser_first_page(server: ReviewServer, results: dict[str, float]) -> None:
    """The page in headless Chromium until its first cluster's tiles are drawn (skipped
    without playwright or chromium); a screenshot goes to $IMGCLUST_SCREENSHOTS if set."""
    import os
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        print("no playwright/chromium: browser timing skipped")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        t = time.perf_counter()
        page.goto(server.url)
        page.wait_for_selector("body[data-ready] #photos .tile")
        results["browser"] = time.perf_counter() - t
        print(f"Chromium: page open until the first cluster's tiles: {results['browser']:.3f} s")
        t = time.perf_counter()
        page.fill("#search", "img-00012")
        page.wait_for_selector("#size:has-text('match')")
        print(f"Chromium: search keystroke until results: {time.perf_counter() - t:.3f} s")
        if os.environ.get("IMGCLUST_SCREENSHOTS"):
            page.screenshot(
                path=os.path.join(os.environ["IMGCLUST_SCREENSHOTS"], "review-100k.png")
            )
        browser.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        timed("write the synthetic run (save, exports, report)", lambda: synthetic(out, n), results)

        def first_page() -> tuple[ReviewServer, httpx.Client]:
            server = ReviewServer(out).__enter__()
            server.start()
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{server.port}", follow_redirects=True, timeout=600
            )
            assert client.get(f"/?token={server.token}").status_code == 200
            assert client.get("/static/review.js").status_code == 200
            state = client.get("/api/state").json()
            assert client.get(f"/api/cluster/{state['clusters'][0]['id']}").status_code == 200
            return server, client

        server, client = timed("time to first page (start app + page + state + cluster 0)",
                               first_page, results)  # fmt: skip
        origin = {"origin": f"http://127.0.0.1:{server.port}"}
        browser_first_page(server, results)

        def edit(body: dict[str, object]) -> dict[str, object]:
            r = client.post(
                "/api/edit", json={**body, "seen": server.review.version}, headers=origin
            )
            assert r.status_code == 200, r.text
            return r.json()

        state = client.get("/api/state").json()
        sizes = [c["size"] for c in state["clusters"]]
        print(f"{n:,} photos, {len(sizes)} clusters; largest {max(sizes):,}; #1 + #2: "
              f"{sizes[1]:,} + {sizes[2]:,}")  # fmt: skip
        timed("merge #1 + #2: answer", lambda: edit({"op": "merge", "clusters": [1, 2]}), results)
        timed("merge: exports + report + model.npz written", server.review.publish, results)
        # From the merged cluster (#1 after the merge): #0 is small at 100k (zipf % k).
        photos = client.get("/api/cluster/1", params={"limit": 500}).json()["photos"]
        paths = [p["path"] for p in photos]
        assert len(paths) == 500 or n < 5_000, len(paths)
        timed("move 500 photos #1 → #3: answer",
              lambda: edit({"op": "move", "paths": paths, "to": 3}), results)  # fmt: skip
        timed("move: exports + report + model.npz written", server.review.publish, results)
        timed("exclude 500 photos: answer",
              lambda: edit({"op": "exclude", "paths": paths}), results)  # fmt: skip
        timed("exclude: outputs + index.faiss written", server.review.publish, results)
        timed("undo: answer", lambda: edit({"op": "undo"}), results)
        search = {"q": "img-00012"}
        timed("search 'img-00012': answer",
              lambda: client.get("/api/search", params=search).json(), results)  # fmt: skip
        client.close()
        timed("stop (last state written)", lambda: server.__exit__(None, None, None), results)
        restart = timed("restart on the edited folder (replay 4 records)",
                        lambda: ReviewServer(out).__enter__(), results)  # fmt: skip
        assert restart.review.version == 4
        restart.__exit__(None, None, None)
        carry_over(out, results)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
