"""Clusterers are pluggable: one registered class is known to config, --help and the factory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from imgclust.cluster import Clusterer, clusterer_help, create_clusterer, list_clusterers
from imgclust.cluster import base as registry
from imgclust.config import ClusterConfig
from imgclust.exceptions import ConfigError


class QuantileSplit(Clusterer):
    """Clusters by the quantile of the first feature: a toy, but a real clusterer."""

    def _labels(self, x: np.ndarray, k: int | None) -> np.ndarray:
        k = k or 2
        edges = np.quantile(x[:, 0], np.linspace(0, 1, k + 1)[1:-1])
        return np.searchsorted(edges, x[:, 0])


@pytest.fixture
def registered() -> Iterator[str]:
    registry.register_clusterer("quantile", "by the first feature's quantiles")(
        lambda n_clusters, random_state: QuantileSplit(n_clusters, random_state=random_state)
    )
    yield "quantile"
    registry._REGISTRY.pop("quantile")


def test_a_registered_clusterer_is_known_everywhere(registered: str) -> None:
    assert registered in list_clusterers()
    assert "quantile: by the first feature's quantiles" in clusterer_help()
    assert ClusterConfig(algorithm=registered).algorithm == registered
    x = np.arange(12, dtype=np.float32)[:, None]
    model = create_clusterer(registered, 3).fit(x)
    assert model.labels_.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert model.cluster_centers_.ravel().tolist() == [1.5, 5.5, 9.5]
    assert model.n_clusters_ == 3


def test_an_unknown_algorithm_names_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match="kmeans") as err:
        ClusterConfig(algorithm="dbscan")
    assert all(name in str(err.value) for name in list_clusterers())
