"""Cluster names that tell clusters apart, broader words, and groups above the clusters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import normalized_mutual_info_score

from imgclust.cluster import KMeans
from imgclust.describe.groups import build_tree, cut_groups, first_parents, n_groups_for
from imgclust.describe.hierarchy import load
from imgclust.describe.names import MAX_LEAD_SHARE, name_clusters
from imgclust.models import imagenet_class_names

CLASSES = imagenet_class_names()
INDEX = {c.split(",")[0].strip(): i for i, c in enumerate(CLASSES)}


def _means(rows: list[dict[str, float]], floor: float = 1e-4) -> np.ndarray:
    """Mean class scores with the given classes (by short name) and a floor elsewhere."""
    out = np.full((len(rows), len(CLASSES)), floor)
    for r, row in enumerate(rows):
        for word, score in row.items():
            out[r, INDEX[word]] = score
    return out / out.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    "words,broader",
    [
        (("lemon", "orange"), "citrus"),
        (("sports car", "pickup", "convertible"), "motor vehicle"),
        (("tabby", "Egyptian cat"), "domestic cat"),
        (("head cabbage", "broccoli", "cauliflower"), "cruciferous vegetable"),
        (("lemon", "sports car"), None),  # only "whole"/"object" covers both: too vague
    ],
)
def test_the_lowest_common_hypernym_is_the_broader_word(
    words: tuple[str, ...], broader: str
) -> None:
    assert load().common([INDEX[w] for w in words]) == broader


def test_a_class_strong_everywhere_does_not_name_every_cluster() -> None:
    shop = ["banana", "lemon", "Granny Smith", "strawberry", "pineapple", "pomegranate"]
    means = _means([{"grocery store": 0.5, fruit: 0.3} for fruit in shop])
    sizes = np.full(len(shop), 50.0)
    dominant = name_clusters(means, sizes, CLASSES, method="dominant")
    distinctive = name_clusters(means, sizes, CLASSES, method="distinctive")
    assert all(n.name.startswith("grocery store") for n in dominant)
    assert [n.name for n in distinctive] == shop  # each named by what sets it apart
    assert [n.dominant[0][0].split(",")[0] for n in distinctive] == ["grocery store"] * 6


def test_auto_renames_only_the_clusters_whose_lead_crowds() -> None:
    rows = [{"alp": 0.6, word: 0.2} for word in ("ski", "valley", "volcano", "cliff")]
    rows += [{"seashore": 0.7}, {"church": 0.7}, {"espresso": 0.7}, {"tabby": 0.7}]
    rows += [{"sports car": 0.7}, {"pizza": 0.7}]
    means = _means(rows)
    names = [n.name for n in name_clusters(means, np.full(10, 10.0), CLASSES, method="auto")]
    assert names[4:] == ["seashore", "church", "espresso", "tabby", "sports car", "pizza"]
    leads = [n.split(" / ")[0] for n in names]
    assert max(leads.count(w) for w in leads) <= max(1, MAX_LEAD_SHARE * len(names))
    # The most "alp" of the crowd may keep it (one is allowed here); each other is led by
    # the class that sets it apart, weak as it is (a third of alp's score).
    assert leads[:4].count("alp") <= 1
    assert set(leads[:4]) - {"alp"} <= {"ski", "valley", "volcano", "cliff"}
    assert len(set(leads[:4]) - {"alp"}) >= 3


def test_a_crowd_is_renamed_by_a_class_strong_in_it_before_a_weak_one() -> None:
    # Four "alp" clusters of twenty: two also show "ski" strongly, two "valley"; each has a
    # fainter class of its own (below STRONG of its top), rarer in the crowd than those. The
    # strong class names it (what its photos show), not the faint one.
    weak = ("tabby", "pizza", "espresso", "church")
    second = ("ski", "ski", "valley", "valley")
    rows = [{"alp": 0.5, s: 0.3, w: 0.18} for s, w in zip(second, weak, strict=True)]
    others = "seashore sports_car lemon banana hotdog acorn cab jeep goldfish hen ostrich bulbul"
    rows += [
        {word.replace("_", " "): 0.7} for word in f"{others} jay magpie chickadee kite".split()
    ]
    names = [n.name for n in name_clusters(_means(rows), np.full(20, 10.0), CLASSES, method="auto")]
    assert [n.split(" / ")[0] for n in names[:4]] == list(second)
    assert len(set(names)) == 20


def test_no_two_clusters_share_a_name_and_twins_are_numbered() -> None:
    rows = [{"Granny Smith": 0.8, "lemon": 0.1}, {"Granny Smith": 0.8, "banana": 0.1}]
    rows += [{"Granny Smith": 0.9}, {"Granny Smith": 0.9}]  # nothing separates these two
    sizes = np.array([40.0, 30, 20, 10])
    names = [n.name for n in name_clusters(_means(rows), sizes, CLASSES, method="dominant")]
    assert len(set(names)) == 4
    assert names[0] == "Granny Smith / lemon" and names[1] == "Granny Smith / banana"
    assert sorted(names[2:]) == ["Granny Smith · 1 of 2", "Granny Smith · 2 of 2"]


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 40),
    spread=st.integers(1, 30),
    method=st.sampled_from(["auto", "distinctive", "dominant"]),
    seed=st.integers(0, 1000),
)
def test_names_are_always_distinct_and_non_empty(
    k: int, spread: int, method: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    means = np.full((k, len(CLASSES)), 1e-5)
    for c in range(k):  # a few strong classes each, drawn from a small pool: many collide
        means[c, rng.integers(0, spread, 3)] += rng.random(3)
    means /= means.sum(axis=1, keepdims=True)
    names = [n.name for n in name_clusters(means, rng.integers(1, 99, k), CLASSES, method=method,
                                           hierarchy=load())]  # fmt: skip
    assert len(set(names)) == k and all(names)
    # nor the same words in another order ("valley / volcano", "volcano / valley")
    bare = [n for n in names if " · " not in n]
    assert len({frozenset(n.split(" / ")) for n in bare}) == len(bare)


def test_the_same_words_in_another_order_are_told_apart() -> None:
    rows = [{"valley": 0.5, "volcano": 0.4, "alp": 0.05}, {"volcano": 0.5, "valley": 0.4}]
    rows += [{"valley": 0.45, "volcano": 0.45}]
    sizes = np.array([40.0, 30, 20])
    names = [n.name for n in name_clusters(_means(rows), sizes, CLASSES, method="dominant")]
    assert names[0] == "valley / volcano / alp", names
    # nothing else sets the other two apart: numbered by size, under one order of the words
    assert names[1:] == ["volcano / valley · 1 of 2", "volcano / valley · 2 of 2"], names


def test_the_tree_groups_clusters_of_one_kind() -> None:
    # Photos of 4 kinds, cut finer (24 clusters) than the kinds: the groups are the kinds.
    rng = np.random.default_rng(0)
    kinds = np.repeat(np.arange(4), 150)
    features = (rng.normal(size=(4, 32)) * 4)[kinds] + rng.normal(size=(600, 32))
    model = KMeans(24, random_state=0).fit(features.astype(np.float32))
    labels, centroids = model.labels_, model.cluster_centers_
    sizes = np.bincount(labels, minlength=24).astype(float)
    linkage, groups, parents = build_tree(centroids, sizes, features=features, labels=labels)
    assert linkage.shape == (23, 4) and groups.shape == (24,)
    assert normalized_mutual_info_score(kinds, groups[labels]) == pytest.approx(1.0)
    assert ((parents >= 24) & (parents < 47)).all()


@pytest.mark.parametrize("k", [0, 1, 2, 3, 10])
def test_tiny_trees(k: int) -> None:
    centroids = np.random.default_rng(k).normal(size=(k, 4))
    linkage, groups, parents = build_tree(centroids, np.ones(k))
    assert len(groups) == len(parents) == k and len(linkage) == max(k - 1, 0)
    assert set(groups.tolist()) <= set(range(max(k, 1)))
    assert n_groups_for(k) >= 1


def test_groups_are_numbered_by_photos() -> None:
    centroids = np.array([[0.0, 0], [0.1, 0], [10, 0], [10.1, 0], [10.2, 0]])
    sizes = np.array([100.0, 100, 1, 1, 1])
    linkage, _, _ = build_tree(centroids, sizes, cut="sqrt")
    groups = cut_groups(linkage, 5, 2, sizes)
    assert groups.tolist() == [0, 0, 1, 1, 1]  # fewer clusters but more photos: group 0
    assert first_parents(linkage, 5).tolist().count(-1) == 0
