"""What the report and the exports are drawn from: the run's one record.

:class:`ReportData` is :class:`imgclust.clustering.Clustering` under the name the report has
always used; see there.
"""

from __future__ import annotations

from ..clustering import Clustering

ReportData = Clustering

__all__ = ["ReportData"]
