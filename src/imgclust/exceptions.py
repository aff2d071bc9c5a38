"""The one exception tree of imgclust.

The library raises these; only the CLI catches them and prints the message, which always says
what to do next. A bad *image* is never an exception: it is a counted rejection with a reason.

::

    ImgclustError
    ├── ConfigError            an option or config file value is invalid
    ├── InputError             an input folder is missing or holds no images
    ├── ModelUnavailableError  a model's weights or its runtime cannot be had here
    ├── StoreError             the feature store cannot be read or written
    ├── OutputError            the output folder cannot be written (read-only, disk full)
    └── EngineError            a distributed engine (Ray) failed (engines/__init__.py)
"""

from __future__ import annotations


class ImgclustError(Exception):
    """Base class of every error imgclust raises on purpose."""


class ConfigError(ImgclustError):
    """An option or config-file value is invalid."""


class InputError(ImgclustError):
    """An input folder is missing, unreadable, or holds no images."""


class ModelUnavailableError(ImgclustError):
    """A model's weights or runtime cannot be loaded; the message says how to fix it."""


class StoreError(ImgclustError):
    """The feature store cannot be read or written."""


class OutputError(ImgclustError):
    """The output folder cannot be written; earlier results are left intact."""
