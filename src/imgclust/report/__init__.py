"""Report: the static HTML gallery and the CSV exports of a run."""

from __future__ import annotations

from .data import ReportData
from .exports import write_exports
from .html import write_report

__all__ = ["ReportData", "write_exports", "write_report"]
