"""imgclust evaluate: scores against sub-folders, on the demo photos (real model, real images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.config import ClusterConfig
from imgclust.evaluate import evaluate, group_of, purity, score


def test_purity_by_contingency() -> None:
    truth = np.array(["a", "a", "a", "b", "b", "c"])
    labels = np.array([0, 0, 1, 1, 1, 1])
    # cluster 0: 2 of a; cluster 1: 2 of b (majority) → 4 of 6
    assert purity(truth, labels) == pytest.approx(4 / 6)


def test_score_of_identical_and_permuted_labels_is_one() -> None:
    truth = ["x", "x", "y", "y", "z"]
    s = score(truth, np.array([2, 2, 0, 0, 1]))
    assert (s.nmi, s.ari, s.purity) == pytest.approx((1.0, 1.0, 1.0))
    worse = score(truth, np.array([0, 1, 0, 1, 0]))
    assert worse.nmi < 0.5 and worse.ari < 0.5


def test_group_is_first_folder_below_root(tmp_path: Path) -> None:
    assert group_of(str(tmp_path / "cats" / "sub" / "a.jpg"), tmp_path) == "cats"
    assert group_of(str(tmp_path / "loose.jpg"), tmp_path) == ""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evalcache")


def test_evaluate_demo_recovers_its_scenes(demo_photos: Path, cache: Path) -> None:
    result = evaluate(demo_photos, cache_dir=cache)
    assert result.n_images == 96  # 12 scenes x 8; the corrupt file and loose files are skipped
    assert result.n_groups == 12 and result.k == 12
    # Variants of one photo are near-duplicates: the clusters must match the folders well.
    assert result.scores.nmi > 0.9
    assert result.scores.purity > 0.85


@pytest.mark.parametrize("algorithm", ["agglomerative", "hdbscan"])
def test_other_algorithms_score_on_demo(demo_photos: Path, cache: Path, algorithm: str) -> None:
    k = None if algorithm == "agglomerative" else "auto"
    result = evaluate(demo_photos, k=k, cluster=ClusterConfig(algorithm=algorithm), cache_dir=cache)
    assert result.scores.nmi > 0.8


def test_cli_evaluate_prints_scores(demo_photos: Path, cache: Path) -> None:
    res = CliRunner().invoke(
        app, ["evaluate", str(demo_photos), "--k", "12", "--cache", str(cache)]
    )
    assert res.exit_code == 0, res.output
    assert "NMI" in res.output and "purity" in res.output and "clusters 12" in res.output
    assert f"features kept in {cache.resolve()}" in res.output  # (a folder it made)


def test_cli_evaluate_rejects_bad_k(demo_photos: Path, cache: Path) -> None:
    res = CliRunner().invoke(
        app, ["evaluate", str(demo_photos), "--k", "many", "--cache", str(cache)]
    )
    assert res.exit_code == 2
    assert "auto" in res.output


def test_cli_evaluate_follows_the_precision(demo_photos: Path, cache: Path) -> None:
    from imgclust.config import EmbedConfig
    from imgclust.embed import model_for
    from imgclust.store import FeatureStore

    for precision in ("fp32", None):  # None: the default, as a run resolves it
        args = ["evaluate", str(demo_photos), "--k", "12", "--cache", str(cache)]
        res = CliRunner().invoke(app, args + (["--precision", precision] if precision else []))
        assert res.exit_code == 0, res.output
        model = model_for(EmbedConfig(precision=precision or "auto"))
        assert any(FeatureStore(cache, model).dir.glob("*.done.json")), model


def test_evaluate_says_what_it_left_out(demo_photos: Path, tmp_path: Path, cache: Path) -> None:
    """Images in no sub-folder and files that cannot be decoded are in no score: said."""
    import shutil

    root = tmp_path / "labelled"
    for scene in ("coffee", "rocket"):
        shutil.copytree(demo_photos / scene, root / scene)
    loose = next((demo_photos / "coffee").glob("*.jpg"))
    shutil.copy(loose, root / "loose.jpg")
    (root / "rocket" / "bad.jpg").write_bytes(b"not a photo")
    res = CliRunner().invoke(app, ["evaluate", str(root), "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    assert (
        f"left out: 1 image directly in {root}, in no sub-folder; 1 file that could not be "
        "read or decoded"
    ) in res.output
    n = sum(1 for p in root.rglob("*.jpg")) - 2
    assert f"images {n}  groups 2" in res.output


def test_noise_is_no_cluster_in_the_count_and_is_said(
    demo_photos: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HDBSCAN's noise (-1) is counted as a run counts it (in no cluster) and said to be
    scored as one more group, so `evaluate` and `run` agree on the number of clusters."""
    import imgclust.evaluate as evaluated

    def three_and_noise(stored: evaluated.StoredFeatures, *_: object) -> np.ndarray:
        labels = np.arange(len(stored.paths)) % 3
        labels[:5] = -1
        return labels

    monkeypatch.setattr(evaluated, "cluster_stored", three_and_noise)
    result = evaluate(demo_photos, k="auto", cache_dir=cache)
    assert result.k == 3 and result.n_noise == 5
    res = CliRunner().invoke(app, ["evaluate", str(demo_photos), "--cache", str(cache)])
    assert "clusters 3 " in res.output and "unclustered: 5 images" in res.output, res.output
