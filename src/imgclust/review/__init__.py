"""``imgclust review``: a local web app to rename, merge, split and move clusters.

:mod:`.edits` holds the journal and the edits (no web code), :mod:`.session` an output folder
under review, :mod:`.app` the Starlette app and its server (imported only when it runs).
"""

from __future__ import annotations

from .edits import EditConflict, EditError
from .session import Review

__all__ = ["EditConflict", "EditError", "Review"]
