"""Extra per-image columns: the EXIF capture date reaches the CSV, the Parquet and the report."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
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
