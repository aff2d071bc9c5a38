"""The static HTML gallery: an index of clusters, pages of cluster rows, and rejected files.

Pages open straight from the file system, with no server and no network: the style sheet is a
file next to them, images are generated thumbnails, originals are ``file://`` links. Every
page is written atomically, and ``index.html`` last, so it only ever points at pages that exist.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._fs import atomic_write_text, ensure_dir
from ..config import ReportConfig
from ..decode import thumb_relpath
from ..describe import ClusterSummary, short_name
from ..scan import display_path
from ..uri import is_uri
from .data import ReportData
from .thumbs import make_thumbnails

if TYPE_CHECKING:
    import jinja2

_HERE = Path(__file__).resolve().parent
_PAGE_RE = re.compile(r"clusters-\d{3,}\.html|cluster--?\d+-\d+\.html|members--?\d+\.js")
#: Images per page of a cluster's own pages (a large cluster gets many pages, never one).
MEMBERS_PER_PAGE = 200


@dataclass(frozen=True)
class _Tile:
    """One image as a page shows it."""

    anchor: str  # "row3-0": the id of its tile on the cluster page
    path: str  # the original's path, as written in a downloaded selection
    outlier: bool
    original: str  # file:// URL of the original
    thumb: str | None  # thumbnail path relative to the page; None: a placeholder is shown
    name: str  # printable file name
    tooltip: str
    n_dups: int = 0  # near-duplicates shown under this tile (collapsed behind its badge)


@dataclass(frozen=True)
class _Group:
    """A tile and the near-duplicates collapsed behind it (most groups have none)."""

    tile: _Tile
    dups: tuple[_Tile, ...] = ()


@dataclass(frozen=True)
class _Row:
    """One cluster as the index and its cluster page show it."""

    cluster_id: int
    anchor: str
    href: str  # "clusters-002.html#row31"
    name: str
    size: int
    top_classes: tuple[tuple[str, float], ...]
    tiles: tuple[_Tile, ...]  # the cluster page's row
    strip: tuple[_Tile, ...]  # the index's preview
    n_more: int  # members not shown on the cluster page
    words: str  # what the index filter matches: name, classes, file and folder names
    n_outliers: int
    distinctive: tuple[tuple[str, float], ...] = ()  # shown where they differ from top_classes
    group: int = -1


@dataclass(frozen=True)
class _GroupRow:
    """One group of clusters as the index shows it."""

    group_id: int
    name: str
    size: int  # photos
    rows: tuple[_Row, ...]
    strip: tuple[_Tile, ...]  # the first photos of its largest clusters
    words: str


def page_name(page: int) -> str:
    """File name of cluster page ``page`` (1-based): ``clusters-001.html``."""
    return f"clusters-{page:03d}.html"


def member_page_name(cluster_id: int, page: int) -> str:
    """File name of page ``page`` (1-based) of one cluster's members: ``cluster-3-1.html``."""
    return f"cluster-{cluster_id}-{page}.html"


def original_url(path: str, thumb: str | None) -> str:
    """Where a photo's tile links: its original (``file://``); for a photo in object storage,
    which a browser cannot open from an ``s3://`` or ``gs://`` URI, its thumbnail (the URI
    is in the tile's hover text), or ``""`` when there is none."""
    if is_uri(path):
        return thumb or ""
    return file_url(path)


def file_url(path: str) -> str:
    """A ``file://`` URL for ``path`` that survives any byte in the name (``#``, ``%``, ...)."""
    if os.name == "nt":  # pragma: no cover - drive letters and backslashes
        return Path(path).absolute().as_uri()
    return "file://" + urllib.parse.quote(os.fsencode(os.path.abspath(path)))


def write_report(
    out_dir: Path,
    data: ReportData,
    config: ReportConfig,
    *,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Write the HTML gallery of ``data`` into ``out_dir``, with thumbnails under ``thumbs/``.

    Clusters are laid out in id order (noise, a negative id, last), ``clusters_per_page`` to
    a page; cluster ``N`` is the element ``id="rowN"`` and its image of rank ``R`` is
    ``id="rowN-R"``. Pages left over from an earlier, larger report are removed.

    Args:
        out_dir: the report folder; created if needed.
        data: what to show.
        config: thumbnail size and page layout.
        workers: processes for thumbnails; ``None`` means one per CPU.
        on_progress: called with the number of thumbnails just made or reused; the calls add
            up to the number of distinct images shown.

    Returns:
        The path of ``index.html``.

    Raises:
        OutputError: when ``out_dir`` cannot be written.
    """
    out_dir = Path(out_dir)
    ensure_dir(out_dir)
    per_page = max(1, config.clusters_per_page)
    n_row, n_strip = max(0, config.thumbs_per_row), max(0, config.strip_size)
    clusters = sorted(data.clusters, key=lambda c: (c.cluster_id < 0, c.cluster_id))
    shown = [data.paths[int(i)] for c in clusters for i in c.members]
    thumbs = make_thumbnails(
        out_dir, shown, size=config.thumb_size, workers=workers, on_progress=on_progress
    )
    groups = {c.cluster_id: _groups(c.members, data.duplicate_of) for c in clusters}
    rows = [
        _row(c, groups[c.cluster_id], data, thumbs, page_name(pos // per_page + 1), n_row, n_strip)
        for pos, c in enumerate(clusters)
    ]
    pages = [rows[start : start + per_page] for start in range(0, len(rows), per_page)]

    env = _environment()
    common: dict[str, Any] = {
        "thumb_size": config.thumb_size,
        "mini_size": max(48, round(config.thumb_size * 0.7)),
        "n_pages": len(pages),
        "n_rejected": len(data.rejected),
    }
    for name in ("style.css", "gallery.js"):
        atomic_write_text(out_dir / name, (_HERE / "static" / name).read_text("utf-8"))
    written = set()
    member_page = np.zeros(len(data.paths), dtype=np.int32)  # each image's page, 1-based
    for c, r in zip(clusters, rows, strict=True):
        written |= _write_member_pages(
            env, out_dir, common, c, r, groups[c.cluster_id], data, thumbs, member_page
        )
    _write_cluster_pages(env, out_dir, common, pages)
    index = _write_index(env, out_dir, common, data, clusters, rows)
    if data.coords is not None and len(data.paths):
        _write_map(env, out_dir, common, data, clusters, member_page, config.thumb_size)
        written |= {"map.html", "map-data.js"}
    written |= {page_name(n) for n in range(1, len(pages) + 1)}
    _remove_stale(out_dir, written, data)
    return index


def _write_cluster_pages(
    env: jinja2.Environment, out_dir: Path, common: Mapping[str, Any], pages: list[list[_Row]]
) -> None:
    for number, page_rows in enumerate(pages, start=1):
        _render(
            env,
            "clusters.html",
            out_dir / page_name(number),
            common,
            rows=page_rows,
            page=number,
            prev=page_name(number - 1) if number > 1 else None,
            next=page_name(number + 1) if number < len(pages) else None,
        )


def _write_index(
    env: jinja2.Environment,
    out_dir: Path,
    common: Mapping[str, Any],
    data: ReportData,
    clusters: list[ClusterSummary],
    rows: list[_Row],
) -> Path:
    """``rejected.html`` (when there are rejects), then ``index.html``; returns the index."""
    if data.rejected:
        rejected = [
            (display_path(r.path), original_url(r.path, None), r.reason) for r in data.rejected
        ]  # (a rejected URI is shown as text: there is nothing a browser could open)
        _render(env, "rejected.html", out_dir / "rejected.html", common, rejected=rejected)
    index = out_dir / "index.html"
    noise = [c for c in clusters if c.cluster_id < 0]
    _render(
        env,
        "index.html",
        index,
        common,
        rows=rows,
        n_good=len(data.paths),
        n_scanned=data.n_scanned,
        n_clusters=len(clusters) - len(noise),
        n_noise=sum(c.size for c in noise if c.cluster_id == -1),  # (not review's unsorted)
        model=data.model,
        features=data.features,
        has_map=data.coords is not None and len(data.paths) > 0,
        groups=_group_rows(data, rows),
    )
    return index


def _groups(members: np.ndarray, duplicate_of: np.ndarray | None) -> list[list[int]]:
    """A cluster's members as near-duplicate groups, ``[leader, *followers]``, nearest first."""
    if duplicate_of is None:
        return [[int(i)] for i in members]
    groups: dict[int, list[int]] = {}
    for i in members.tolist():
        leader = int(duplicate_of[i])
        if leader >= 0 and leader in groups:  # leaders come first: they are nearer
            groups[leader].append(i)
        else:
            groups[i] = [i]
    return list(groups.values())


def _row(
    cluster: ClusterSummary,
    groups: list[list[int]],
    data: ReportData,
    thumbs: Mapping[str, str],
    page: str,
    n_row: int,
    n_strip: int,
) -> _Row:
    anchor = f"row{cluster.cluster_id}"
    tiles = tuple(
        _tile(g[0], anchor, data, thumbs, n_dups=len(g) - 1) for g in groups[: max(n_row, n_strip)]
    )
    outliers = data.outliers
    words = " ".join(
        [cluster.name]
        + [d for d, _ in (*cluster.top_classes, *cluster.distinctive)]
        + _file_words(data, cluster.members)
    ).lower()
    shown_distinctive = tuple(cluster.distinctive[:3])
    if {d for d, _ in shown_distinctive} == {d for d, _ in cluster.top_classes[:3]}:
        shown_distinctive = ()  # the same classes lead both ways: shown once
    tree = data.tree
    n_in_row = sum(1 + t.n_dups for t in tiles[:n_row])
    return _Row(
        cluster_id=cluster.cluster_id,
        anchor=anchor,
        href=f"{page}#{anchor}",
        name=cluster.name,
        size=cluster.size,
        top_classes=cluster.top_classes,
        tiles=tiles[:n_row],
        strip=tiles[:n_strip],
        n_more=cluster.size - n_in_row,
        words=words,
        n_outliers=0 if outliers is None else int(outliers[cluster.members].sum()),
        distinctive=shown_distinctive,
        group=int(tree.groups[cluster.cluster_id]) if tree and cluster.cluster_id >= 0 else -1,
    )


#: File and folder names the index filter matches, per cluster: all its folders, and file
#: names for up to this many members (the index page stays small at a million photos).
FILTER_FILE_NAMES = 2000


def _file_words(data: ReportData, members: np.ndarray) -> list[str]:
    folders = {os.path.basename(os.path.dirname(data.paths[int(i)])) for i in members}
    names = [os.path.basename(data.paths[int(i)]) for i in members[:FILTER_FILE_NAMES]]
    return [display_path(w) for w in sorted(folders) + names]


def _group_rows(data: ReportData, rows: list[_Row]) -> list[_GroupRow]:
    """The index's groups (none when the clustering has no tree or one group)."""
    tree = data.tree
    if tree is None or tree.n_groups < 2:
        return []
    out = []
    for g, name in enumerate(tree.names):
        members = tuple(r for r in rows if r.group == g)
        if not members:
            continue
        strip = tuple(t for r in members[:4] for t in r.strip[:2])
        # The group's own words: its name matches all its clusters, theirs only themselves.
        out.append(_GroupRow(g, name, sum(r.size for r in members), members, strip, name.lower()))
    from ..clustering import UNSORTED_LABEL, group_name

    for label in (UNSORTED_LABEL, -1):  # marked "not this cluster" in review; the rest
        unsorted = label == UNSORTED_LABEL
        noise = tuple(
            r for r in rows if r.group < 0 and (r.cluster_id == UNSORTED_LABEL) == unsorted
        )
        if noise:
            name = group_name(label)
            out.append(_GroupRow(label, name, sum(r.size for r in noise), noise, (), name))
    return out


def _tile(
    index: int, row_anchor: str, data: ReportData, thumbs: Mapping[str, str], n_dups: int = 0
) -> _Tile:
    path = data.paths[index]
    rank = int(data.ranks[index])
    folder, name = os.path.split(display_path(path))
    classes = "\n".join(f"{short_name(d)}  {s:.3f}" for d, s in data.image_top_classes[index])
    tooltip = f"{name}\nrank {rank} · distance {float(data.distances[index]):.4g}\n{classes}"
    outlier = data.outliers is not None and bool(data.outliers[index])
    if outlier:
        tooltip += "\noutlier: beyond the cluster's typical distance"
    if n_dups:
        tooltip += f"\n{n_dups} near-duplicate{'s' if n_dups > 1 else ''} collapsed under this tile"
    for column, values in data.columns.items():  # the extra per-image columns, when known
        if values[index]:
            tooltip += f"\n{column}: {values[index]}"
    return _Tile(
        anchor=f"{row_anchor}-{rank}",
        path=display_path(path),
        outlier=outlier,
        original=original_url(path, thumbs.get(path)),
        thumb=thumbs.get(path),
        name=name,
        tooltip=f"{tooltip.rstrip()}\n{folder}",
        n_dups=n_dups,
    )


def _write_member_pages(
    env: jinja2.Environment,
    out_dir: Path,
    common: Mapping[str, Any],
    cluster: ClusterSummary,
    row: _Row,
    groups: list[list[int]],
    data: ReportData,
    thumbs: Mapping[str, str],
    member_page: np.ndarray,
) -> set[str]:
    """All members of one cluster, nearest first, :data:`MEMBERS_PER_PAGE` tiles to a page (a
    tile's near-duplicates ride along on its page); and ``members-N.js``, the member paths
    and thumbnails, loaded by the index when a whole cluster is selected and by the map.

    ``member_page`` receives the page number of each member."""
    anchor = f"row{cluster.cluster_id}"
    n_pages = max(1, -(-len(groups) // MEMBERS_PER_PAGE))
    names = set()
    for number in range(1, n_pages + 1):
        chunk = groups[(number - 1) * MEMBERS_PER_PAGE : number * MEMBERS_PER_PAGE]
        for g in chunk:
            member_page[g] = number
        name = member_page_name(cluster.cluster_id, number)
        _render(
            env,
            "members.html",
            out_dir / name,
            common,
            row=row,
            groups=[
                _Group(
                    _tile(g[0], anchor, data, thumbs, n_dups=len(g) - 1),
                    tuple(_tile(i, anchor, data, thumbs) for i in g[1:]),
                )
                for g in chunk
            ],
            # (over every photo shown: a tile's near-duplicates have ranks of their own)
            first_rank=min((int(data.ranks[i]) for g in chunk for i in g), default=0),
            last_rank=max((int(data.ranks[i]) for g in chunk for i in g), default=0),
            page=number,
            n_member_pages=n_pages,
            prev=member_page_name(cluster.cluster_id, number - 1) if number > 1 else None,
            next=member_page_name(cluster.cluster_id, number + 1) if number < n_pages else None,
        )
        names.add(name)
    paths = [display_path(data.paths[int(i)]) for i in cluster.members]
    pics = [thumbs.get(data.paths[int(i)]) for i in cluster.members]
    script = f"imgclustMembers({cluster.cluster_id}, {_js_json(paths)}, {_js_json(pics)});\n"
    atomic_write_text(out_dir / f"members-{cluster.cluster_id}.js", script)
    names.add(f"members-{cluster.cluster_id}.js")
    return names


def _write_map(
    env: jinja2.Environment,
    out_dir: Path,
    common: Mapping[str, Any],
    data: ReportData,
    clusters: list[ClusterSummary],
    member_page: np.ndarray,
    thumb_size: int,
) -> None:
    """``map.html``, ``map.js`` and ``map-data.js``, and ``map-N.js`` per cluster.

    ``map-data.js``: every image's lattice cell (no two alike: :func:`~.layout.settle`),
    cluster, rank and member page, as base64 typed arrays (20 bytes an image: 100k images
    are 2.7 MB of script); each cluster's name, size and group, and each group's name and
    colour (regions that touch differ: :func:`~.layout.colour_regions`). ``map-N.js``: the
    hover text and original of each member of cluster N, by rank, loaded when the pointer
    first comes to that cluster. Thumbnails come from ``members-N.js``, as the gallery's."""
    import base64

    from .layout import colour_regions, settle

    labels = np.asarray(data.labels, dtype=np.int32)
    cells = settle(np.asarray(data.coords), labels).astype(np.int32)
    ranks = np.asarray(data.ranks, dtype=np.int32)
    by_id = sorted(clusters, key=lambda c: c.cluster_id)  # the order np.unique(labels) has
    group_of, group_names, noise = _map_groups(data, by_id)
    colour = colour_regions(cells, labels, np.asarray(group_of), len(MAP_PALETTE))
    hues = [
        UNCLUSTERED_COLOUR if g == noise else MAP_PALETTE[colour[g]]
        for g in range(len(group_names))
    ]
    # a shade of its group's hue for each cluster, neighbours apart
    shade = colour_regions(cells, labels, np.arange(len(by_id)), len(MAP_SHADES))
    meta = {
        "n": len(cells),
        "thumbSize": thumb_size,
        "clusters": {
            str(c.cluster_id): [c.name, c.size, group_of[i], _shade(hues[group_of[i]], shade[i])]
            for i, c in enumerate(by_id)
        },
        "groups": [[name, hues[g]] for g, name in enumerate(group_names)],
    }

    def b64(a: np.ndarray) -> str:
        return base64.b64encode(np.ascontiguousarray(a, dtype="<i4").tobytes()).decode("ascii")

    script = (
        f'imgclustMap({_js_json(meta)}, "{b64(cells.reshape(-1))}", '
        f'"{b64(labels)}", "{b64(ranks)}", "{b64(np.asarray(member_page, np.int32))}");\n'
    )
    atomic_write_text(out_dir / "map-data.js", script)
    written = set()
    for c in by_id:
        name = f"map-{c.cluster_id}.js"
        hover = [_map_hover(data, int(i)) for i in c.members]
        originals = [
            original_url(p, thumb_relpath(p, thumb_size))
            for p in (data.paths[int(i)] for i in c.members)
        ]
        atomic_write_text(
            out_dir / name,
            f"imgclustMapInfo({c.cluster_id}, {_js_json(hover)}, {_js_json(originals)});\n",
        )
        written.add(name)
    for old in out_dir.glob("map-*.js"):  # clusters an earlier, larger report had
        if _MAP_INFO_RE.fullmatch(old.name) and old.name not in written:
            with contextlib.suppress(OSError):
                old.unlink()
    atomic_write_text(out_dir / "map.js", (_HERE / "static" / "map.js").read_text("utf-8"))
    _render(env, "map.html", out_dir / "map.html", common, n_images=len(cells))


#: Region colours of the map: Tableau's ten without its grey (kept for the unclustered), a
#: blue lightened for the dark ground; regions that touch never share one.
MAP_PALETTE = (
    "#5b9bd5", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
)  # fmt: skip
UNCLUSTERED_COLOUR = "#8e9197"
#: A cluster's shade of its group's hue: lightness moved by this much (HLS, 0-1).
MAP_SHADES = (0.0, 0.14, -0.13, 0.25)


def _shade(hex_colour: str, shade: int) -> str:
    """``hex_colour`` lighter or darker by ``MAP_SHADES[shade]`` (its hue and saturation kept)."""
    import colorsys

    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    h, lightness, sat = colorsys.rgb_to_hls(r, g, b)
    lightness = min(max(lightness + MAP_SHADES[shade % len(MAP_SHADES)], 0.18), 0.9)
    return "#" + "".join(f"{round(v * 255):02x}" for v in colorsys.hls_to_rgb(h, lightness, sat))


_MAP_INFO_RE = re.compile(r"map--?\d+\.js")


def _map_groups(data: ReportData, by_id: list[ClusterSummary]) -> tuple[list[int], list[str], int]:
    """The group of each cluster (``by_id`` order), the groups' names, and which group the
    unclustered photos are (-1: none). Groups are the clustering's tree's when it has one,
    else one a cluster; the unclustered photos are a group of their own."""
    from ..clustering import UNCLUSTERED, group_name

    tree = data.tree
    group_of: list[int] = []
    names: list[str] = []
    index: dict[Any, int] = {}
    for c in by_id:
        if c.cluster_id < 0:  # unclustered, or unsorted (review's "not this cluster")
            name = group_name(c.cluster_id)
            key: Any = name
        elif tree is not None and c.cluster_id < len(tree.groups):
            key = ("group", int(tree.groups[c.cluster_id]))
            name = str(tree.names[key[1]])
        else:
            key = ("cluster", c.cluster_id)
            name = c.name
        if key not in index:
            index[key] = len(names)
            names.append(name)
        group_of.append(index[key])
    return group_of, names, index.get(UNCLUSTERED, -1)


def _map_hover(data: ReportData, index: int) -> str:
    """What hovering a photo on the map shows below its name: rank, classes, flags."""
    lines = [f"rank {int(data.ranks[index])} · distance {float(data.distances[index]):.4g}"]
    lines += [f"{short_name(d)}  {s:.3f}" for d, s in data.image_top_classes[index]]
    if data.outliers is not None and bool(data.outliers[index]):
        lines.append("outlier: beyond the cluster's typical distance")
    for column, values in data.columns.items():
        if values[index]:
            lines.append(f"{column}: {values[index]}")
    return "\n".join([display_path(data.paths[index]), *lines])


def _js_json(value: object) -> str:
    """JSON safe inside a script: no ``</script>``, no line separators."""
    import json

    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _environment() -> jinja2.Environment:
    import jinja2  # only needed when a report is written

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["thousands"] = lambda n: f"{n:,}"
    env.filters["short"] = short_name
    return env


def render_template(template: str, **context: Any) -> str:
    """One of the report's templates rendered with ``context`` (e.g. ``similar.html``)."""
    return _environment().get_template(template).render(**context)


def _render(
    env: jinja2.Environment,
    template: str,
    dest: Path,
    common: Mapping[str, Any],
    **context: Any,
) -> None:
    atomic_write_text(dest, env.get_template(template).render(**common, **context))


def _remove_stale(out_dir: Path, pages: set[str], data: ReportData) -> None:
    """Remove pages an earlier report wrote that this one does not (they would mislead)."""
    stale = [p for p in out_dir.iterdir() if _PAGE_RE.fullmatch(p.name) and p.name not in pages]
    if not data.rejected:
        stale.append(out_dir / "rejected.html")
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()


__all__ = ["file_url", "page_name", "render_template", "write_report"]
