"""Tests of the HTML gallery and CSV exports, on small real images with awkward names."""

from __future__ import annotations

import base64
import csv
import dataclasses
import os
import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclust.config import ReportConfig
from imgclust.describe import ClusterSummary, rank_members
from imgclust.exceptions import OutputError
from imgclust.report import ReportData, write_exports, write_report
from imgclust.report.thumbs import PARALLEL_MIN, thumb_relpath
from imgclust.scan import Rejection

XSS = "<script>alert(1)</script>"
ODD_NAMES = [
    "plain.jpg",
    "with space.png",
    "hash#tag.png",
    "what?.png",
    'double"quote.png',
    "single'quote.png",
    "100%.png",
    "<img src=x onerror=alert(1)>.png",
    f"{XSS}.png",  # "/" is a separator, so this is a folder and a file: the path holds it
]


def _save_image(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    fmt = "JPEG" if path.suffix == ".jpg" else "PNG"
    Image.fromarray(pixels).save(path, fmt)


def _make_images(root: Path, n: int, *, odd: bool = True) -> list[str]:
    names = list(ODD_NAMES) if odd else []
    if odd:
        names.append(os.fsdecode(b"caf\xe9.png"))  # not valid UTF-8
    names += [f"img{i:03d}.png" for i in range(n - len(names))]
    paths = []
    for i, name in enumerate(names[:n]):
        path = root / name
        _save_image(path, (320 + i, 240), seed=i)
        paths.append(os.path.abspath(path))
    return paths


def _make_data(
    paths: list[str],
    labels: list[int],
    *,
    rejected: list[Rejection] | None = None,
    names: dict[int, str] | None = None,
) -> ReportData:
    labels_arr = np.asarray(labels, dtype=np.int64)
    distances = np.linspace(0.1, 0.9, len(paths))[::-1].copy()
    ranks = rank_members(labels_arr, distances)
    tops = [
        (("espresso", 0.9 - i / 1000), ("cup", 0.05), ("coffee mug, mug", 0.01))
        for i in range(len(paths))
    ]
    clusters = []
    for cid in sorted(set(labels)):
        idx = np.flatnonzero(labels_arr == cid)
        idx = idx[np.argsort(ranks[idx])]
        clusters.append(
            ClusterSummary(
                cluster_id=cid,
                name=(names or {}).get(cid, f"cluster {cid}"),
                top_classes=(("tabby, tabby cat", 0.6), ("tiger cat", 0.2)),
                members=idx,
                distances=distances[idx],
                medoid=int(idx[0]),
            )
        )
    return ReportData(
        paths=paths,
        labels=labels_arr,
        ranks=ranks,
        distances=distances,
        image_top_classes=tops,
        clusters=clusters,
        rejected=rejected or [],
        model="efficientnet_lite0",
        features="embedding",
    )


class _Elements(HTMLParser):
    """Every start tag of a page, as (tag, attributes)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _tags(page: Path) -> list[tuple[str, dict[str, str]]]:
    parser = _Elements()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tags


def _ids(page: Path) -> set[str]:
    return {attrs["id"] for _, attrs in _tags(page) if "id" in attrs}


@pytest.fixture
def gallery(tmp_path: Path) -> tuple[Path, ReportData, ReportConfig]:
    """A report of 14 images (odd names included) in 5 clusters, 2 clusters a page."""
    paths = _make_images(tmp_path / "photos", 14)
    labels = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 0, 1]
    rejected = [
        Rejection(str(tmp_path / "photos" / f"{XSS}.png"), "corrupt or truncated: <b>bad</b>"),
        Rejection(str(tmp_path / "photos" / "empty.jpg"), "empty file (0 bytes)"),
    ]
    data = _make_data(paths, labels, rejected=rejected, names={2: f"{XSS} / cup"})
    config = ReportConfig(thumb_size=64, clusters_per_page=2, thumbs_per_row=4, strip_size=3)
    out = tmp_path / "out"
    write_report(out, data, config, workers=1)
    write_exports(out, data)
    return out, data, config


def test_report_data_counts_scanned_files(gallery: tuple[Path, ReportData, ReportConfig]) -> None:
    _, data, _ = gallery
    assert data.n_scanned == 14 + 2


def test_report_data_rejects_misaligned_arrays() -> None:
    with pytest.raises(ValueError, match="labels"):
        ReportData(["/a.jpg"], np.zeros(2), np.zeros(1), np.zeros(1), [()], [], [], "m", "f")


def test_index_links_every_cluster_to_its_page_and_anchor(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, config = gallery
    hrefs = {attrs.get("href", "") for _, attrs in _tags(out / "index.html")}
    text = (out / "index.html").read_text(encoding="utf-8")
    for c in data.clusters:
        page = c.cluster_id // config.clusters_per_page + 1
        assert f"clusters-{page:03d}.html#row{c.cluster_id}" in hrefs
        if "<" not in c.name:
            assert c.name in text
    assert "14 good images of 16 · 5 clusters" in text
    assert "rejected.html" in hrefs


def test_rows_sit_on_their_page_with_pager(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, config = gallery
    pages = sorted(out.glob("clusters-*.html"))
    assert [p.name for p in pages] == [
        "clusters-001.html",
        "clusters-002.html",
        "clusters-003.html",
    ]
    for c in data.clusters:
        page = out / f"clusters-{c.cluster_id // config.clusters_per_page + 1:03d}.html"
        assert f"row{c.cluster_id}" in _ids(page)
        others = [p for p in pages if p != page]
        assert all(f"row{c.cluster_id}" not in _ids(p) for p in others)
    middle = {attrs.get("href") for _, attrs in _tags(pages[1])}
    assert {"index.html", "clusters-001.html", "clusters-003.html"} <= middle


def test_every_shown_image_is_an_anchored_lazy_thumbnail(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, config = gallery
    n_tiles = 0
    for page in out.glob("clusters-*.html"):
        tags = _tags(page)
        for tag, attrs in tags:
            if tag == "img":
                n_tiles += 1
                assert attrs["loading"] == "lazy"
                assert attrs["src"].startswith("thumbs/")
                with Image.open(out / attrs["src"]) as thumb:
                    assert max(thumb.size) <= config.thumb_size
        ids = _ids(page)
        for c in data.clusters:
            if f"row{c.cluster_id}" in ids:
                shown = c.members[: config.thumbs_per_row]
                assert {f"row{c.cluster_id}-{int(data.ranks[i])}" for i in shown} <= ids
    assert n_tiles == sum(min(c.size, config.thumbs_per_row) for c in data.clusters)
    for c in data.clusters:
        for i in c.members[: config.thumbs_per_row]:
            with (
                Image.open(data.paths[i]) as original,
                Image.open(out / thumb_relpath(data.paths[i], config.thumb_size)) as thumb,
            ):
                assert thumb.width * thumb.height < original.width * original.height
        for i in c.members:  # every member is shown on the cluster's own pages
            assert (out / thumb_relpath(data.paths[i], config.thumb_size)).exists()


def test_tile_tooltip_shows_rank_distance_and_classes(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, _, _ = gallery
    figures = [a for t, a in _tags(out / "clusters-001.html") if t == "figure"]
    first = next(a for a in figures if a["id"] == "row0-0")
    assert "rank 0 · distance" in first["title"]
    assert "espresso" in first["title"] and "cup" in first["title"]


def test_more_members_than_a_row_are_counted(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, config = gallery
    extra = data.clusters[0].size - config.thumbs_per_row
    assert extra > 0
    assert f"+{extra} more: all members" in (out / "clusters-001.html").read_text("utf-8")
    members = out / "cluster-0-1.html"
    assert {f"row0-{r}" for r in range(data.clusters[0].size)} <= _ids(members)


def test_no_markup_from_names_reaches_any_page(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, _ = gallery
    pages = list(out.glob("*.html")) + list(out.glob("members-*.js"))
    assert len(pages) == 5 + 2 * len(data.clusters)  # + a member page and list per cluster
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert "<b>bad" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (out / "rejected.html").read_text("utf-8")


def test_links_to_originals_decode_back_to_the_path(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    _, data, _ = gallery
    out = gallery[0].parent / "all"
    write_report(out, data, ReportConfig(thumb_size=32, thumbs_per_row=100), workers=1)
    hrefs = {
        attrs["href"]
        for page in out.glob("clusters-*.html")
        for tag, attrs in _tags(page)
        if tag == "a" and attrs.get("href", "").startswith("file://")
    }
    targets = {os.fsdecode(urllib.parse.unquote_to_bytes(h.removeprefix("file://"))) for h in hrefs}
    odd = [p for p in data.paths if not os.path.basename(p).startswith("img")]
    assert len(odd) == len(ODD_NAMES) + 1
    assert set(odd) <= targets
    for href in hrefs:
        assert not re.search(r"[\s#?\"'<>]", href.removeprefix("file://"))
        if "%23" in href:
            assert urllib.parse.unquote(href).endswith("hash#tag.png")


def test_rejected_page_and_csv_list_every_rejection(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, _ = gallery
    page = (out / "rejected.html").read_text(encoding="utf-8")
    with open(out / "rejected.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    assert [(r["path"], r["reason"]) for r in rows] == [(r.path, r.reason) for r in data.rejected]
    assert "empty file (0 bytes)" in page
    assert "corrupt or truncated: &lt;b&gt;bad&lt;/b&gt;" in page


def test_assignments_csv_one_row_per_image_in_cluster_then_rank_order(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, _ = gallery
    with open(out / "assignments.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [
        "path",
        "cluster",
        "rank",
        "distance",
        "outlier",
        "cluster_name",
        "top_classes",
        "duplicate_of",
    ]
    assert sorted(r["path"] for r in rows) == sorted(data.paths)  # non-UTF-8 name round-trips
    keys = [(int(r["cluster"]), int(r["rank"])) for r in rows]
    assert keys == sorted(keys)
    for row in rows:
        i = data.paths.index(row["path"])
        assert int(row["cluster"]) == data.labels[i]
        assert row["distance"] == f"{data.distances[i]:.6g}"
        assert row["top_classes"].startswith(f"espresso:{0.9 - i / 1000:.3f}|cup:0.050|coffee mug:")
    assert {r["cluster_name"] for r in rows if r["cluster"] == "2"} == {f"{XSS} / cup"}


def test_clusters_csv_has_one_row_per_cluster(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, _ = gallery
    with open(out / "clusters.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["cluster"]) for r in rows] == [c.cluster_id for c in data.clusters]
    assert [int(r["size"]) for r in rows] == [c.size for c in data.clusters]
    assert rows[0]["medoid"] == data.paths[data.clusters[0].medoid]
    assert rows[0]["top_classes"] == "tabby:0.600|tiger cat:0.200"


def test_exports_leave_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    data = _make_data(["/a.jpg", "/b.jpg"], [0, 0])
    write_exports(tmp_path, data)
    before = (tmp_path / "assignments.csv").read_bytes()
    broken = _make_data(["/a.jpg", "/b.jpg"], [0, 0])
    object.__setattr__(broken, "image_top_classes", [(("x", "not a number"),)] * 2)
    with pytest.raises(ValueError):
        write_exports(tmp_path, broken)
    assert (tmp_path / "assignments.csv").read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_second_report_reuses_thumbnails(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, config = gallery
    thumbs = sorted((out / "thumbs").rglob("*.jpg"))
    before = {p: p.stat().st_mtime_ns for p in thumbs}
    touched = data.paths[data.clusters[0].members[0]]
    newer = before[out / thumb_relpath(touched, config.thumb_size)] + 10**9
    os.utime(touched, ns=(newer, newer))
    settled: list[int] = []
    write_report(out, data, config, workers=1, on_progress=settled.append)
    after = {p: p.stat().st_mtime_ns for p in thumbs}
    remade = out / thumb_relpath(touched, config.thumb_size)
    assert after[remade] > before[remade]
    assert {p: t for p, t in after.items() if p != remade} == {
        p: t for p, t in before.items() if p != remade
    }
    assert sum(settled) == len(thumbs)


def test_unreadable_image_gets_a_placeholder(tmp_path: Path) -> None:
    paths = _make_images(tmp_path / "photos", 3, odd=False)
    Path(paths[1]).write_bytes(b"not an image at all")
    paths.append(str(tmp_path / "photos" / "gone.png"))  # deleted since the scan
    data = _make_data(paths, [0, 0, 0, 0])
    out = tmp_path / "out"
    write_report(out, data, ReportConfig(thumb_size=32), workers=1)
    tags = _tags(out / "clusters-001.html")
    assert sum(tag == "img" for tag, _ in tags) == 2
    assert (out / "clusters-001.html").read_text("utf-8").count(">unavailable<") == 2


def test_thumbnails_in_parallel_match_the_serial_ones(tmp_path: Path) -> None:
    n = PARALLEL_MIN + 4
    paths = _make_images(tmp_path / "photos", n, odd=False)
    data = _make_data(paths, [0] * n)
    config = ReportConfig(thumb_size=48, thumbs_per_row=n)
    progress: list[int] = []
    write_report(tmp_path / "par", data, config, workers=2, on_progress=progress.append)
    write_report(tmp_path / "ser", data, config, workers=1)
    par = sorted(p.relative_to(tmp_path / "par") for p in (tmp_path / "par").rglob("*.jpg"))
    ser = sorted(p.relative_to(tmp_path / "ser") for p in (tmp_path / "ser").rglob("*.jpg"))
    assert par == ser and len(par) == n
    assert sum(progress) == n and len(progress) == n


def test_summary_uses_thousands_separators_and_only_shown_images_get_thumbnails(
    tmp_path: Path,
) -> None:
    real = _make_images(tmp_path / "photos", 4, odd=False)
    paths = real + [str(tmp_path / "elsewhere" / f"{i}.jpg") for i in range(1995)]
    labels = [0, 1, 2, 3] + [i % 4 for i in range(1995)]
    data = _make_data(paths, labels, rejected=[Rejection("/x.jpg", "permission denied")])
    out = tmp_path / "out"
    write_report(out, data, ReportConfig(thumb_size=32, thumbs_per_row=3, strip_size=2))
    assert "1,999 good images of 2,000 · 4 clusters" in (out / "index.html").read_text("utf-8")
    assert len(list((out / "thumbs").rglob("*.jpg"))) <= 4


def test_noise_cluster_goes_last(tmp_path: Path) -> None:
    paths = _make_images(tmp_path / "photos", 4, odd=False)
    data = _make_data(paths, [-1, 0, 1, 1])
    out = tmp_path / "out"
    write_report(out, data, ReportConfig(thumb_size=32, clusters_per_page=2))
    assert {"row0", "row1"} <= _ids(out / "clusters-001.html")
    assert "row-1" in _ids(out / "clusters-002.html")
    assert "4 good images of 4 · 2 clusters · 1 unclustered" in (out / "index.html").read_text(
        "utf-8"
    )


def test_stale_pages_of_a_larger_report_are_removed(
    gallery: tuple[Path, ReportData, ReportConfig],
) -> None:
    out, data, config = gallery
    small = _make_data(list(data.paths[:4]), [0, 0, 1, 1])
    write_report(out, small, config, workers=1)
    assert sorted(p.name for p in out.glob("clusters-*.html")) == ["clusters-001.html"]
    assert not (out / "rejected.html").exists()


@pytest.mark.parametrize("blocker", ["parent-is-a-file", "read-only"])
def test_unwritable_output_raises_output_error(tmp_path: Path, blocker: str) -> None:
    paths = _make_images(tmp_path / "photos", 2, odd=False)
    data = _make_data(paths, [0, 0])
    if blocker == "parent-is-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores folder permissions")
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="writable"):
            write_report(out, data, ReportConfig(thumb_size=32))
        with pytest.raises(OutputError, match="writable"):
            write_exports(out, data)
    finally:
        if out.exists():
            out.chmod(0o700)


def test_near_duplicates_collapse_under_their_leader(tmp_path: Path) -> None:
    """Cluster 0 holds 7 images; ranks 1 and 4 are near-duplicates of rank 0, rank 3 of 2."""
    paths = _make_images(tmp_path / "photos", 9)
    data = _make_data(paths, [0] * 7 + [1] * 2)
    by_rank = {int(data.ranks[i]): i for i in data.clusters[0].members}
    dup = np.full(len(paths), -1)
    dup[[by_rank[1], by_rank[4]]] = by_rank[0]
    dup[by_rank[3]] = by_rank[2]
    data = dataclasses.replace(data, duplicate_of=dup)
    config = ReportConfig(thumb_size=64, thumbs_per_row=2, strip_size=2)
    out = tmp_path / "out"
    write_report(out, data, config, workers=1)
    write_exports(out, data)

    page = (out / "cluster-0-1.html").read_text("utf-8")
    figures = {a["id"]: a["class"].split() for t, a in _tags(out / "cluster-0-1.html")
               if t == "figure"}  # fmt: skip
    assert len(figures) == 7  # every member is on the page, with its anchor
    assert {i for i, c in figures.items() if "dup" in c} == {"row0-1", "row0-3", "row0-4"}
    badges = re.findall(r'<button type="button" class="dup-badge"[^>]*>\+(\d+)</button>', page)
    assert badges == ["2", "1"]
    # A page whose one tile stands for all: its ranks are those of every photo it shows.
    one = dataclasses.replace(data, duplicate_of=np.where(data.labels == 0, by_rank[0], -1))
    one.duplicate_of[by_rank[0]] = -1
    write_report(tmp_path / "one", one, config, workers=1)
    assert "ranks 0–6, nearest" in (tmp_path / "one" / "cluster-0-1.html").read_text("utf-8")
    # the row shows leaders only (ranks 0 and 2): 2 tiles stand for 5 images, 2 more remain
    row = _ids(out / "clusters-001.html")
    assert {"row0-0", "row0-2"} <= row and not {"row0-1", "row0-3"} & row
    assert "+2 more: all members" in (out / "clusters-001.html").read_text("utf-8")
    # and so does the index's preview: its "+N" counts none that a tile's badge counts
    card = (out / "index.html").read_text("utf-8").split('id="card0"')[1].split("</section>")[0]
    assert re.findall(r'class="more"[^>]*>\+(\d+)<', card) == ["2"]
    with open(out / "assignments.csv", newline="", encoding="utf-8") as f:
        rows = {r["path"]: r["duplicate_of"] for r in csv.DictReader(f)}
    assert rows[paths[by_rank[4]]] == paths[by_rank[0]] and rows[paths[by_rank[0]]] == ""


def test_a_group_stays_on_its_leaders_member_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgclust.report import html

    monkeypatch.setattr(html, "MEMBERS_PER_PAGE", 2)
    paths = [str(tmp_path / f"missing-{i}.jpg") for i in range(5)]
    data = _make_data(paths, [0] * 5)
    by_rank = {int(data.ranks[i]): i for i in data.clusters[0].members}
    dup = np.full(5, -1)
    dup[by_rank[3]] = by_rank[1]  # rank 3 rides with rank 1 on page 1
    coords = np.zeros((5, 2))
    data = dataclasses.replace(data, duplicate_of=dup, coords=coords)
    write_report(tmp_path / "out", data, ReportConfig(), workers=1)
    assert {"row0-0", "row0-1", "row0-3"} == _ids(tmp_path / "out" / "cluster-0-1.html") & {
        f"row0-{r}" for r in range(5)
    }
    assert {"row0-2", "row0-4"} <= _ids(tmp_path / "out" / "cluster-0-2.html")
    script = (tmp_path / "out" / "map-data.js").read_text("ascii")
    pages = np.frombuffer(base64.b64decode(script.split('"')[-2]), "<i4")  # last array
    expected = np.array([1 if int(data.ranks[i]) in (0, 1, 3) else 2 for i in range(5)])
    assert pages.tolist() == expected.tolist()


def test_map_layout_places_in_chunks_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgclust.report import layout as layout_module

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(1000, 16)).astype(np.float16)
    centroids = rng.normal(size=(7, 16)).astype(np.float32)
    labels = rng.integers(0, 7, 1000)
    dist = np.linalg.norm(feats.astype(np.float32) - centroids[labels], axis=1)
    fitted = layout_module.fit_layout(feats, centroids, labels, dist)
    whole = fitted.place(feats, centroids, labels, dist)
    monkeypatch.setattr(layout_module, "_PLACE_ROWS", 64)  # bounded memory: many chunks
    assert np.array_equal(fitted.place(feats, centroids, labels, dist), whole)
    # Discs do not overlap and every image lies inside its cluster's disc.
    gaps = np.linalg.norm(fitted.centres[:, None] - fitted.centres[None], axis=2)
    need = fitted.radii[:, None] + fitted.radii[None]
    assert (gaps[np.triu_indices(7, 1)] >= need[np.triu_indices(7, 1)] * 0.99).all()
    inside = np.linalg.norm(whole - fitted.centres[labels], axis=1)
    assert (inside <= fitted.radii[labels] * 1.001).all()
