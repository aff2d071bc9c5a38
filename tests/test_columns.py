"""Extra per-image columns: the EXIF capture date reaches the CSV, the Parquet and the report."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imgclust import cluster_folder
from imgclust.clustering import capture_dates


def _photo(path: Path, colour: tuple[int, int, int], taken: str | None) -> str:
    img = Image.new("RGB", (64, 48), colour)
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(0x8769)[36867] = taken  # DateTimeOriginal
    img.save(path, exif=exif.tobytes())
    return str(path)


def test_capture_date_from_exif_or_empty(tmp_path: Path) -> None:
    with_date = _photo(tmp_path / "a.jpg", (200, 30, 30), "2024:06:01 12:34:56")
    without = _photo(tmp_path / "b.jpg", (30, 200, 30), None)
    broken = tmp_path / "c.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    got = capture_dates([with_date, without, str(broken), str(tmp_path / "gone.jpg")])
    assert list(got) == ["2024-06-01 12:34:56", "", "", ""]


def test_capture_date_in_every_export_and_the_report(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    dated = _photo(photos / "a.jpg", (200, 30, 30), "2023:12:24 18:00:00")
    _photo(photos / "b.jpg", (30, 30, 200), None)
    out = tmp_path / "out"
    cluster_folder([photos], out=out, k=2, workers=0)
    with open(out / "assignments.csv", newline="", encoding="utf-8") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh)}
    assert rows[dated]["taken"] == "2023-12-24 18:00:00"
    assert rows[str(photos / "b.jpg")]["taken"] == ""
    table = pq.read_table(out / "assignments.parquet").to_pydict()
    assert dict(zip(table["path"], table["taken"], strict=True))[dated] == "2023-12-24 18:00:00"
    pages = "".join(p.read_text(encoding="utf-8") for p in out.glob("cluster*.html"))
    assert "taken: 2023-12-24 18:00:00" in pages  # the tile's hover text


def _dated_folder(folder: Path) -> dict[str, str]:
    """A JPEG with a date (and an orientation, which decoding rewrites), one without, a PNG
    whose date is in an eXIf chunk: path → the date the column must show."""
    folder.mkdir()
    want = {
        _photo(folder / "a.jpg", (200, 30, 30), "2023:12:24 18:00:00"): "2023-12-24 18:00:00",
        _photo(folder / "b.jpg", (30, 30, 200), None): "",
    }
    rotated = Image.new("RGB", (64, 48), (30, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90
    exif.get_ifd(0x8769)[36867] = "2020:02:29 23:59:59"
    rotated.save(folder / "c.jpg", exif=exif.tobytes())
    want[str(folder / "c.jpg")] = "2020-02-29 23:59:59"
    png = Image.new("RGB", (64, 48), (200, 200, 30))
    exif = Image.Exif()
    exif[306] = "2019:01:02 03:04:05"  # IFD0 DateTime only
    png.save(folder / "d.png", exif=exif.tobytes())
    want[str(folder / "d.png")] = "2019-01-02 03:04:05"
    return want


def _taken(out: Path) -> dict[str, str]:
    with open(out / "assignments.csv", newline="", encoding="utf-8") as fh:
        return {r["path"]: r["taken"] for r in csv.DictReader(fh)}


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose EXIF the run's record reads (not decoding's own reads)."""
    import imgclust.clustering as clustering

    read: list[str] = []
    real = clustering._capture_date

    def spy(path: str) -> str:
        read.append(path)
        return real(path)

    monkeypatch.setattr(clustering, "_capture_date", spy)
    return read


@pytest.mark.parametrize("workers", [0, 2])
def test_decoding_records_the_date_and_no_run_reads_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """The date is read from the header the decoder parsed (in its worker), kept in the
    store's ``taken`` column, and taken from there by this run and every later one."""
    want = _dated_folder(tmp_path / "photos")
    assert capture_dates(list(want)).tolist() == list(want.values())  # read as files are
    read = _reads(monkeypatch)
    out = tmp_path / "out"
    cluster_folder([tmp_path / "photos"], out=out, k=2, workers=workers)
    assert _taken(out) == want
    shards = sorted((out / ".imgclust" / "store").rglob("shard-*.parquet"))
    stored = pq.read_table(shards, columns=["path", "taken"]).to_pydict()
    assert dict(zip(stored["path"], stored["taken"], strict=True)) == want
    cluster_folder([tmp_path / "photos"], out=out, k=2, workers=workers)  # all from the store
    assert _taken(out) == want
    assert read == []


def test_photos_stored_before_the_column_get_their_date_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written before decoding recorded dates (null ``taken``, as migrated ``.npz``
    shards have too): the run reads those photos' dates from the files, and only those."""
    import imgclust.store as store

    want = _dated_folder(tmp_path / "photos")
    out = tmp_path / "out"
    real = store.shard_table
    with monkeypatch.context() as patch:  # the first run writes shards as older versions did
        patch.setattr(store, "shard_table", lambda *a, **kw: real(*a, **{**kw, "taken": None}))
        cluster_folder([tmp_path / "photos"], out=out, k=2, workers=0)
    shards = sorted((out / ".imgclust" / "store").rglob("shard-*.parquet"))
    assert set(pq.read_table(shards, columns=["taken"]).column("taken").to_pylist()) == {None}
    assert _taken(out) == want  # (read from the files)
    extra = tmp_path / "photos" / "e.jpg"
    want[_photo(extra, (90, 90, 90), "2025:05:05 05:05:05")] = "2025-05-05 05:05:05"
    read = _reads(monkeypatch)
    cluster_folder([tmp_path / "photos"], out=out, k=2, workers=0)
    assert _taken(out) == want
    assert sorted(read) == sorted(p for p in want if p != str(extra))  # the new one: stored


@pytest.mark.parametrize("pattern", ["", "k", "n", "kn", "nk", "knk", "nkn", "kkkk", "nnnn"])
def test_known_values_are_kept_and_only_the_rest_computed(pattern: str) -> None:
    """``image_columns`` over every mix of known (k) and unknown (n) values, 0 to 4 photos."""
    from imgclust.clustering import IMAGE_COLUMNS, image_columns

    paths = [f"/p/{i}.jpg" for i in range(len(pattern))]
    asked: list[list[str]] = []

    def column(ps: Sequence[str]) -> np.ndarray:
        asked.append(list(ps))
        return np.array([f"computed {p}" for p in ps], dtype=object)

    known = np.array(
        [f"known {p}" if c == "k" else None for p, c in zip(paths, pattern, strict=True)], object
    )
    saved = dict(IMAGE_COLUMNS)
    try:
        IMAGE_COLUMNS.clear()
        IMAGE_COLUMNS["taken"] = column
        got = image_columns(paths, {"taken": known})["taken"].tolist()
    finally:
        IMAGE_COLUMNS.clear()
        IMAGE_COLUMNS.update(saved)
    assert got == [
        f"{'known' if c == 'k' else 'computed'} {p}" for p, c in zip(paths, pattern, strict=True)
    ]
    todo = [p for p, c in zip(paths, pattern, strict=True) if c == "n"]
    assert asked == ([todo] if todo else [])
