"""Inputs as URIs: photos in object storage (``s3://``, ``gs://``), read through ``pyarrow.fs``.

A URI input takes the same path through the run as a local folder: the scan lists it
(:func:`list_files`: every object below it, with size and mtime), decode reads each photo's
bytes (:func:`read_file`), and the store keys each photo by its URI (``s3://bucket/a.jpg``).
``file://`` URIs are plain local paths (:func:`local_path`), so a local photo has one key.
Local paths never reach this module's filesystem code: :func:`is_uri` is a string test and
``pyarrow.fs`` is imported only for a URI, so a local run pays nothing.

Where the storage is and who may read it come from the environment, as for the clouds' own
tools, so that every process that reads a photo (decode workers, Ray workers) builds the same
filesystem from the URI alone and only strings are pickled:

* S3: the AWS credential chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile,
  an instance role), ``AWS_REGION``, and ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``)
  for an S3-compatible server (MinIO, Ceph, a test server), e.g. ``http://127.0.0.1:9000``;
* GCS: Google's default credentials (``GOOGLE_APPLICATION_CREDENTIALS``).

Options in the URI's query (``?endpoint_override=...``) are refused: a photo's key would then
depend on how it was reached.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeGuard

from .exceptions import InputError

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

#: Schemes read through pyarrow.fs (``gcs`` is pyarrow's other name for ``gs``).
SCHEMES = ("s3", "gs", "gcs")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: How long a GCS request may be retried: its client's default (15 minutes) would make a
#: missing credential or an unreachable network look like a hang.
_GCS_RETRY = timedelta(seconds=20)


def is_uri(path: object) -> TypeGuard[str]:
    """Whether ``path`` is a URI (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and "://" in path and _URI.match(path) is not None


def local_path(uri: str) -> str | None:
    """The local path a ``file://`` URI names (``file:///a%20b`` → ``/a b``), else ``None``.

    Raises:
        InputError: a ``file://`` URI of another host.
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme.lower() != "file":
        return None
    if parts.netloc not in ("", "localhost"):
        raise InputError(f"{uri}: a file:// URI must name a path on this machine (file:///...)")
    return urllib.parse.unquote(parts.path) or "/"


@dataclass(frozen=True, slots=True)
class Location:
    """A URI split for pyarrow.fs: its scheme and the filesystem's path (``bucket/key``)."""

    scheme: str
    path: str

    @property
    def bucket(self) -> str:
        """The bucket the path is in."""
        return self.path.split("/", 1)[0]

    def uri(self, path: str | None = None) -> str:
        """``scheme://path`` for ``path`` (default: this location's own)."""
        return f"{self.scheme}://{self.path if path is None else path}"


def locate(uri: str) -> Location:
    """Check ``uri`` is one this module reads and split it.

    Raises:
        InputError: an unsupported scheme, a query or fragment, or no bucket.
    """
    match = _URI.match(uri)
    scheme = match.group(1).lower() if match else ""
    if scheme not in SCHEMES:
        raise InputError(
            f"{uri}: unsupported URI scheme {scheme + '://'!r}; PHOTOS may be local paths, "
            "file://, s3:// or gs:// URIs"
        )
    rest = uri[len(scheme) + 3 :]
    if "?" in rest or "#" in rest:
        raise InputError(
            f"{uri}: options in a URI are not supported; give the endpoint and credentials "
            "through the environment (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ...; see "
            "docs/scale.md)"
        )
    path = rest.strip("/")
    if not path:
        raise InputError(f"{uri}: name a bucket, e.g. {scheme}://my-bucket/photos")
    if "//" in path:  # (pyarrow.fs refuses an empty key component with a ValueError)
        raise InputError(f"{uri}: an empty name between two slashes; remove one of them")
    return Location("gs" if scheme == "gcs" else scheme, path)


@functools.lru_cache(maxsize=64)
def filesystem(scheme: str, bucket: str) -> FileSystem:
    """This process's filesystem for one bucket (built once; S3's region is resolved per
    bucket).

    Raises:
        InputError: pyarrow cannot build it (its S3/GCS support missing, a bad region).
    """
    try:
        from pyarrow import fs

        if scheme == "gs":
            return fs.GcsFileSystem(retry_time_limit=_GCS_RETRY)
        return fs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]
    except (ImportError, OSError, ValueError) as exc:
        raise InputError(f"cannot open {scheme}://{bucket}: {short_error(exc)}") from None


def short_error(exc: BaseException) -> str:
    """pyarrow's message about a failed request, on one line and without request ids."""
    text = " ".join(str(exc).split())
    text = re.sub(r" ?\(Request ID: [^)]*\)", "", text)
    return text[:300] or type(exc).__name__


_CREDENTIAL_ERRORS = re.compile(
    r"ACCESS_DENIED|AccessDenied|InvalidAccessKeyId|Forbidden|SignatureDoesNotMatch|OAuth2"
    r"|credentials|\b403\b"  # (a word: not the 403 in a port such as 127.0.0.1:44037)
)


def hint(exc: BaseException) -> str:
    """What to check after a failed request, from pyarrow's message."""
    text = str(exc)
    if _CREDENTIAL_ERRORS.search(text):
        return (
            "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile for "
            "S3, GOOGLE_APPLICATION_CREDENTIALS for GCS)"
        )
    if any(s in text for s in ("NETWORK_CONNECTION", "connect", "resolve", "UNAVAILABLE")):
        return (
            "check the network and the endpoint (AWS_ENDPOINT_URL_S3 for an S3-compatible server)"
        )
    return "check the URI, the credentials and AWS_ENDPOINT_URL_S3 (for S3-compatible servers)"


class NotThere(InputError):
    """Nothing at a URI: a missing bucket, or no object at it or below it (as opposed to
    storage that cannot be reached or read, which says nothing of what is there)."""


def check(uri: str) -> None:
    """Raise :class:`InputError` unless ``uri`` names an object or a prefix with objects.

    Raises:
        NotThere: a missing bucket, or nothing at the URI.
        InputError: a bad URI, or storage that cannot be reached or read (with what to
            check).
    """
    where = locate(uri)
    fs = filesystem(where.scheme, where.bucket)
    from pyarrow.fs import FileType

    try:
        info = fs.get_file_info(where.path)
        # A missing bucket reads as an empty prefix; the bucket's own entry tells them apart.
        missing = info.type == FileType.NotFound and (
            "/" not in where.path or fs.get_file_info(where.bucket).type == FileType.NotFound
        )
    except OSError as exc:
        if "NO_SUCH_BUCKET" in str(exc) or "NoSuchBucket" in str(exc):
            missing = True
        else:
            raise InputError(f"cannot read {uri} ({short_error(exc)}); {hint(exc)}") from None
    if missing:
        raise NotThere(f"{uri}: the bucket {where.bucket!r} does not exist (or is not yours)")
    if info.type == FileType.NotFound:
        raise NotThere(f"{uri}: no object there, and none below it (an empty prefix?)")


@dataclass(frozen=True, slots=True)
class Entry:
    """An object found by :func:`list_files`: its URI, size, and mtime in nanoseconds."""

    uri: str
    size: int
    mtime_ns: int


def list_files(uri: str, *, skip_below: tuple[str, ...] = ()) -> tuple[list[Entry], list[str]]:
    """Every object at or below ``uri``, and the prefixes left out because they hold one of
    ``skip_below`` (imgclust's output markers). Folder placeholders are not objects.

    Raises:
        InputError: as :func:`check`.
        OSError: the listing failed part-way (the caller rejects the root).
    """
    where = locate(uri)
    fs = filesystem(where.scheme, where.bucket)
    from pyarrow.fs import FileSelector, FileType

    info = fs.get_file_info(where.path)
    if info.type == FileType.File:
        return [Entry(where.uri(), info.size or 0, _mtime_ns(info))], []
    found = fs.get_file_info(FileSelector(where.path, recursive=True))
    # A prefix holding a marker (object or "folder") is an imgclust output or export folder
    # that was copied into the bucket: its thumbnails are not photos.
    skipped = sorted(
        {i.path.rsplit("/", 1)[0] for i in found if i.base_name in skip_below and "/" in i.path}
    )
    entries = [
        Entry(where.uri(i.path), i.size or 0, _mtime_ns(i))
        for i in found
        if i.type == FileType.File and not _below(i.path, skipped)
    ]
    return entries, [where.uri(p) for p in skipped]


def _below(path: str, prefixes: list[str]) -> bool:
    return any(path.startswith(p + "/") for p in prefixes)


def _mtime_ns(info: Any) -> int:
    # Object stores give a last-modified time (to the second on S3); 0 where none is known.
    return int(info.mtime_ns) if info.mtime_ns is not None else 0


def stat(uri: str) -> Entry:
    """The object's size and mtime now.

    Raises:
        FileNotFoundError: no such object.
        OSError: it cannot be reached or read.
        InputError: a bad URI.
    """
    where = locate(uri)
    fs = filesystem(where.scheme, where.bucket)
    from pyarrow.fs import FileType

    info = fs.get_file_info(where.path)
    if info.type == FileType.NotFound:
        raise FileNotFoundError(f"no object {uri}")
    if info.type != FileType.File:
        raise IsADirectoryError(f"{uri} is a prefix, not an object")
    return Entry(uri, info.size or 0, _mtime_ns(info))


def read_file(uri: str) -> tuple[bytes, Entry]:
    """The object's bytes, and the size and mtime they were read under.

    One metadata request and one streamed read (not the many ranged reads a decoder's seeks
    would make on a random-access file).

    Raises:
        as :func:`stat`.
    """
    entry = stat(uri)
    where = locate(uri)
    with filesystem(where.scheme, where.bucket).open_input_stream(where.path) as stream:
        data = stream.read()
    if len(data) != entry.size:  # replaced between the two requests: describe what was read
        entry = Entry(uri, len(data), entry.mtime_ns)
    return data, entry


def read_head(uri: str, size: int) -> bytes:
    """The first ``size`` bytes of the object (fewer if it is shorter): one streamed GET,
    closed once they are read (a header, without the rest of the photo).

    Raises:
        as :func:`stat`.
    """
    where = locate(uri)
    with filesystem(where.scheme, where.bucket).open_input_stream(where.path) as stream:
        return bytes(stream.read(size))


__all__ = [
    "SCHEMES",
    "Entry",
    "Location",
    "NotThere",
    "check",
    "filesystem",
    "is_uri",
    "list_files",
    "local_path",
    "locate",
    "read_file",
    "stat",
]
