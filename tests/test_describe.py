"""Cluster names, member order, medoids, renumbering."""

from __future__ import annotations

import numpy as np

from imgclust.describe import (
    class_statistics,
    cluster_name,
    describe,
    mean_scores_by_cluster,
    medoid,
    rank_members,
    relabel_by_size,
    short_name,
    top_classes,
)

NAMES = [f"class{i}, synonym{i}" for i in range(10)]


def test_name_takes_dominant_classes_as_words() -> None:
    scores = np.zeros(10)
    scores[[3, 7, 1]] = [0.5, 0.3, 0.01]
    assert cluster_name(scores, NAMES) == "class3 / class7"
    assert short_name("sunglasses, dark glasses, shades") == "sunglasses"


def test_ranks_follow_distance_within_each_cluster() -> None:
    labels = np.array([1, 0, 1, 0, 1])
    dist = np.array([0.5, 0.2, 0.1, 0.9, 0.3])
    assert rank_members(labels, dist).tolist() == [2, 0, 0, 1, 1]


def test_medoid_is_the_central_member() -> None:
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0]])
    assert medoid(pts, np.arange(4)) in (1, 2)
    assert medoid(pts, np.array([0, 1, 2])) == 1


def test_relabel_by_size_puts_largest_first() -> None:
    labels = np.array([5, 5, 2, 2, 2, 9, -1])
    paths = [f"/p{i}" for i in range(7)]
    assert relabel_by_size(labels, paths).tolist() == [1, 1, 0, 0, 0, 2, -1]


def test_describe_orders_members_and_names() -> None:
    labels = np.array([0, 0, 1, 1, 0])
    dist = np.array([0.3, 0.1, 0.2, 0.4, 0.2])
    feats = np.arange(10, dtype=np.float32).reshape(5, 2)
    scores = np.full((5, 10), 0.01)
    scores[labels == 0, 2] = 0.9
    scores[labels == 1, 5] = 0.9
    summaries = describe(labels, dist, feats, mean_scores_by_cluster(scores, labels), NAMES)
    assert [s.cluster_id for s in summaries] == [0, 1]
    assert summaries[0].members.tolist() == [1, 4, 0]
    assert summaries[0].name == "class2" and summaries[1].name == "class5"
    assert summaries[0].top_classes[0][0] == NAMES[2]
    tops = top_classes(scores, NAMES, n=2)
    assert tops[2][0] == (NAMES[5], 0.9)


def test_outlier_fence_flags_the_far_tail() -> None:
    from imgclust.describe import outlier_thresholds

    labels = np.array([0] * 8 + [1] * 3)
    dist = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 5.0, 1.0, 2.0, 9.0])
    t = outlier_thresholds(labels, dist, 2)
    assert (dist[labels == 0] > t[0]).tolist() == [False] * 7 + [True]
    assert np.isinf(t[1])


def test_top_class_ids_match_a_full_sort() -> None:
    from imgclust.describe import top_class_ids

    scores = np.random.default_rng(0).random((200, 1000))
    expected = np.argsort(-scores, axis=1)[:, :3]
    assert (top_class_ids(scores, 3) == expected).all()


def test_class_statistics_in_chunks_equal_the_whole_matrix() -> None:
    from imgclust.cluster import softmax
    from imgclust.describe import top_class_ids

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(300, 50)).astype(np.float32) * 3
    labels = rng.integers(-1, 6, size=300)
    perm = rng.permutation(300)  # chunks in any order, as shards come from the store
    chunks = [(perm[a : a + 64], logits[perm[a : a + 64]]) for a in range(0, 300, 64)]
    stats = class_statistics(chunks, labels, top=3)
    scores = softmax(logits)
    expected = mean_scores_by_cluster(scores, labels)
    assert sorted(stats.cluster_scores) == sorted(expected) == list(range(-1, 6))
    for c, mean in expected.items():
        assert np.allclose(stats.cluster_scores[c], mean, atol=1e-6)
    assert (stats.top_ids == top_class_ids(scores, 3)).all()
    tops = stats.image_top_classes([f"c{i}" for i in range(50)])
    assert len(tops) == 300 and tops[7][0][0] == f"c{scores[7].argmax()}"
    assert abs(tops[7][0][1] - scores[7].max()) < 1e-6
