"""Similar photos: the nearest images of a clustered collection to one image.

The query is the image's row of the saved similarity index when it is in the collection,
otherwise it is embedded on the fly with the collection's model (nothing is stored). The
result is also written as a small HTML page next to the report (``similar-<hash>.html``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import uri
from ._fs import atomic_write_text
from .embed import Embedder, check_device
from .exceptions import InputError
from .report.html import original_url, render_template
from .report.thumbs import make_thumbnails
from .scan import display_path, stat_record
from .state import SavedClustering, features_of, load_clustering, read_index
from .steps import output_folder


@dataclass(frozen=True)
class Neighbour:
    """One similar image."""

    path: str
    distance: float
    cluster: int
    cluster_name: str
    outlier: bool


@dataclass(frozen=True)
class SimilarResult:
    """The query, its neighbours nearest first, and the page that shows them."""

    query: str
    in_collection: bool
    neighbours: list[Neighbour]
    page: Path


def find_similar(
    image: str | Path, out: Path, *, n: int = 20, device: str = "auto"
) -> SimilarResult:
    """The ``n`` images of the collection in ``out`` nearest to ``image``.

    Raises:
        InputError: ``image`` is missing or unreadable, or ``out`` has no saved clustering.
    """
    check_device(device)
    out = Path(out).resolve()
    with output_folder(out, "similar", create=False) as marker:  # it writes a page into out
        saved = load_clustering(marker)
        index = read_index(marker, len(saved.paths), saved=saved)
        return _search(saved, index, out, image, n=n, device=device)


def _search(
    saved: SavedClustering, index: Any, out: Path, image: str | Path, *, n: int, device: str
) -> SimilarResult:
    query = str(image)  # keyed as the scan keyed the collection: s3://b/a.jpg, /abs/a.jpg
    if uri.is_uri(query):
        query = uri.local_path(query) or uri.locate(query).uri()  # (file:///a is /a)
    if not uri.is_uri(query):
        query = os.path.abspath(query)
    row = {p: i for i, p in enumerate(saved.paths)}.get(query)
    if row is not None:
        vector = index.reconstruct(row)[None, :]
    else:
        vector = _embed_one(query, saved, device)
    k = min(len(saved.paths), n + (row is not None))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(index.hnsw.efSearch, 2 * k)
    sq, ids = index.search(np.ascontiguousarray(vector, dtype=np.float32), k)
    neighbours = [
        Neighbour(
            path=saved.paths[int(i)],
            distance=float(np.sqrt(max(float(d), 0.0))),
            cluster=int(saved.labels[int(i)]),
            cluster_name=saved.cluster_name(int(saved.labels[int(i)])),
            outlier=saved.outliers is not None and bool(saved.outliers[int(i)]),
        )
        for d, i in zip(sq[0], ids[0], strict=True)
        if i >= 0 and int(i) != row
    ][:n]
    page = _write_page(out, query, neighbours, saved.report.thumb_size)
    return SimilarResult(query, row is not None, neighbours, page)


def _embed_one(path: str, saved: SavedClustering, device: str) -> np.ndarray:
    try:
        record = stat_record(path)  # (a bad URI: its InputError, as it is)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    embedder = Embedder(saved.model, batch_size=1, device=device, workers=0)
    block = embedder([record])
    if block.rejected:
        raise InputError(f"cannot use {path} as a query: {block.rejected[0][1]}")
    spec = embedder.spec
    return features_of(
        saved,
        logits=block.logits_array(spec.n_classes),
        embedding=block.embedding_array(spec.embedding_dim),
    )


def _write_page(out: Path, query: str, neighbours: list[Neighbour], size: int) -> Path:
    thumbs = make_thumbnails(out, [query] + [nb.path for nb in neighbours], size=size, workers=1)
    digest = hashlib.sha1(os.fsencode(query), usedforsecurity=False).hexdigest()[:10]
    page = out / f"similar-{digest}.html"
    tiles = [
        {
            "name": os.path.basename(display_path(nb.path)),
            "url": original_url(nb.path, thumbs.get(nb.path)),
            "thumb": thumbs.get(nb.path),
            "distance": nb.distance,
            "cluster": nb.cluster,
            "cluster_name": nb.cluster_name,
            "outlier": nb.outlier,
        }
        for nb in neighbours
    ]
    html = render_template(
        "similar.html",
        thumb_size=size,
        mini_size=size,
        query_name=os.path.basename(display_path(query)),
        query_url=original_url(query, thumbs.get(query)),
        query_thumb=thumbs.get(query),
        tiles=tiles,
    )
    atomic_write_text(page, html)
    return page
