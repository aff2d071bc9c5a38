"""Cluster names and groups on the labelled sets: which scoring names clusters apart, which
tree and cut make groups that match the true classes, and what k suits small collections.

    .venv/bin/python bench/names.py [--cache /tmp/bench-cache] > bench/results/names.md

Per set and naming method, at k = 100 (the default) and k = number of classes: distinct
names / k (before the "· i of n" numbering, as sets of words, and after), the share of
clusters led by the most common leading class, and name accuracy: a cluster's name is right
when one of its words, or a WordNet hypernym of its leading class, is among the words
accepted for the true class most of its photos have (lists below; classes without a fitting
ImageNet word are left out). Groups: NMI of the group level at k = 100 against the folders,
next to clustering straight at k = classes. Small collections: random subsets clustered at
several k rules."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score as nmi

from imgclust.cluster import create_clusterer, make_features
from imgclust.config import EmbedConfig, default_k
from imgclust.describe import class_statistics, cluster_name, relabel_by_size, short_name
from imgclust.describe.groups import CUTS, LINKAGES, build_tree
from imgclust.describe.hierarchy import load as load_hierarchy
from imgclust.describe.names import name_clusters
from imgclust.evaluate import load_labelled
from imgclust.models import imagenet_class_names

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CARS = {
    "sports car",
    "car",
    "race car",
    "convertible",
    "motor vehicle",
    "beach wagon",
    "cab",
    "car wheel",
    "grille",
    "go-kart",
    "limousine",
    "minivan",
    "jeep",
    "pickup",
    "racer",
}
CUPS = {
    "cup",
    "coffee mug",
    "espresso",
    "mug",
    "teapot",
    "beverage",
    "crockery",
    "vessel",
    "container",
    "consomme",
    "soup bowl",
    "mixing bowl",
    "pitcher",
    "vase",
    "coffeepot",
    "measuring cup",
    "saltshaker",
    "tableware",
    "bucket",
    "water jug",
}
PRODUCE = {
    "Granny Smith",
    "lemon",
    "orange",
    "fig",
    "pomegranate",
    "edible fruit",
    "produce",
    "vegetable",
    "bell pepper",
    "acorn squash",
    "spaghetti squash",
    "butternut squash",
    "cucumber",
    "citrus",
    "apple",
    "eating apple",
    "strawberry",
    "hip",
    "banana",
    "jackfruit",
    "custard apple",
    "fruit",
    "squash",
    "head cabbage",
    "cauliflower",
}
BOTTLES = {
    "pill bottle",
    "bottle",
    "lotion",
    "water bottle",
    "sunscreen",
    "hair spray",
    "soap dispenser",
    "beer bottle",
    "pop bottle",
    "wine bottle",
    "vessel",
    "packet",
    "carton",
    "medicine chest",
    "toiletry",
    "cosmetic",
    "drug",
    "container",
    "can",
    "nipple",
    "whiskey jug",
}
TOYS = {
    "piggy bank",
    "teddy",
    "toyshop",
    "tabby",
    "cat",
    "Egyptian cat",
    "domestic cat",
    "tiger cat",
    "Persian cat",
    "toy",
    "doll",
    "figurine",
    "pitcher",
    "vase",
    "teapot",
}
ACCEPTED: dict[str, dict[str, set[str]]] = {
    "intel-scenes-dev": {
        "mountain": {"alp", "valley", "volcano", "mountain", "natural elevation", "cliff",
                     "promontory", "mountain tent", "ridge"},
        "glacier": {"glacier", "iceberg", "alp", "mountain", "ski", "snowmobile", "dogsled",
                    "valley", "volcano", "cliff", "natural elevation"},
        "buildings": {"church", "monastery", "palace", "mosque", "library", "cinema", "prison",
                      "bell cote", "dome", "triumphal arch", "tile roof", "castle", "building",
                      "place of worship", "planetarium", "boathouse", "barn", "apiary",
                      "steel arch bridge", "obelisk", "stupa", "house", "residence"},
        "street": {"street", "streetcar", "cab", "trolleybus", "traffic light", "street sign",
                   "passenger car", "motor vehicle", "car", "minibus", "parking meter",
                   "crosswalk", "moving van", "police van", "tram", "bus", "school bus"},
        "sea": {"seashore", "sandbar", "promontory", "lakeside", "breakwater", "shore",
                "boathouse", "liner", "catamaran", "canoe", "speedboat", "wreck", "coast",
                "fireboat", "dock", "beach", "lifeboat", "pier"},
        "forest": {"valley", "lakeside", "bolete", "hen-of-the-woods", "worm fence", "woody plant",
                   "vascular plant", "tree", "park bench", "garden", "forest", "agaric",
                   "fungus", "stinkhorn", "hay"},
    },
    "coil100-dev": {
        "obj2": PRODUCE, "obj4": PRODUCE,
        "obj3": {"fireboat", "speedboat", "lifeboat", "boat", "toyshop", "submarine",
                 "paddlewheel", "vessel", "ship", "liner", "container ship", "amphibian",
                 "watercraft", "craft", "catamaran"},
        "obj5": BOTTLES, "obj7": BOTTLES, "obj9": BOTTLES, "obj13": BOTTLES,
        "obj6": CARS, "obj8": CARS, "obj15": CARS,
        "obj10": CUPS, "obj11": CUPS, "obj16": CUPS, "obj18": CUPS,
        "obj12": {"mushroom", "agaric", "bolete", "fungus", "stinkhorn", "hen-of-the-woods",
                  "toadstool", "lampshade", "table lamp", "wooden spoon"},
        "obj14": TOYS, "obj17": TOYS,
        "obj19": {"fire engine", "truck", "motor vehicle", "tow truck", "trailer truck",
                  "school bus", "ambulance", "pickup", "moving van"},
    },
    # Assembled by bench/collect_photos.py from registry packages (freely licensed, not public
    # domain: no public-domain labelled set of 100+ photos is in PyPI, npm or Debian; see
    # bench/results/collections.md). Classes without a fitting ImageNet word are left out.
    "tuxpaint-photos": {
        "bird": {"bird"}, "fish": {"fish"}, "invertebrate": {"invertebrate"},
        "bovid": {"bovid"}, "rodent": {"rodent", "leporid"}, "big-cat": {"big cat"},
        "deer": {"ruminant"}, "equine": {"equine"}, "primate": {"primate"},
        "marine-mammal": {"aquatic mammal", "otter", "sea lion"},
        "fruit": {"edible fruit", "fruit", "produce"},
        "vegetable": {"vegetable", "corn", "ear", "produce"}, "mushroom": {"fungus", "mushroom"},
        "flower": {"flower"}, "tool": {"tool", "rule", "paintbrush"},
        "musical-instrument": {"musical instrument"}, "vehicle": {"vehicle"}, "ball": {"ball"},
    },
    "ifct-foods": {
        "fruit": {"edible fruit", "fruit", "produce"}, "other-vegetable": {"vegetable", "produce"},
        "leafy-vegetable": {"vegetable", "produce"}, "root-tuber": {"vegetable", "produce"},
        "mushroom": {"fungus", "mushroom"}, "marine-fish": {"fish"}, "freshwater-fish": {"fish"},
        "marine-shellfish": {"crustacean"}, "marine-mollusk": {"mollusk"}, "poultry": {"bird"},
    },
}  # fmt: skip
#: Where each set's photos are (folder = class): the shared datasets, and the collections
#: ``bench/collect_photos.py`` assembles (run it first; a set not there is skipped, said so).
COLLECTIONS = Path("/tmp/imgclust-collections")
SETS = {
    "intel-scenes-dev": DATASETS / "intel-scenes-dev",
    "coil100-dev": DATASETS / "coil100-dev",
    "tuxpaint-photos": COLLECTIONS / "tuxpaint-photos",
    "ifct-foods": COLLECTIONS / "ifct-foods",
}


def cluster(feats: np.ndarray, k: int | None, paths: list[str]) -> np.ndarray:
    labels = create_clusterer("auto", k).fit(feats).labels_
    return relabel_by_size(labels, paths)


def scored(means: np.ndarray, sizes: np.ndarray, variant: str) -> np.ndarray | None:
    """Bench-only scorings beside the library's ("distinctive" / "dominant": None)."""
    bg = (means * sizes[:, None]).sum(0) / sizes.sum()
    if variant == "soft":  # mean score, weighed up by lift: log(1 + lift)
        return means * np.log1p((means + 1e-9) / (bg + 1e-9))
    if variant == "floor":  # the distinctive among the strong: KL term, if mean >= 1/4 top
        kl = means * np.log((means + 1e-9) / (bg + 1e-9))
        strong = means >= 0.25 * means.max(axis=1, keepdims=True)
        return np.where(strong, kl, -np.inf)
    if variant == "lift":  # lift tempered by the square root of the cluster's own mass
        return np.sqrt(means) * (means + 1e-9) / (bg + 1e-9)
    if variant == "logodds":  # Monroe et al. 2008: z-score of the log-odds, Dirichlet prior
        y = means * sizes[:, None]
        total = y.sum(0)
        alpha = 10.0 * bg
        a0 = alpha.sum()
        n_c, n = sizes[:, None], sizes.sum()
        rest = total - y
        d = np.log((y + alpha) / (n_c + a0 - y - alpha)) - np.log(
            (rest + alpha) / (n - n_c + a0 - rest - alpha)
        )
        return d / np.sqrt(1 / (y + alpha) + 1 / (rest + alpha))
    return None


def name_rows(
    name: str, means: np.ndarray, sizes: np.ndarray, labels: np.ndarray, truth: list[str]
) -> dict[str, list[str]]:
    """Names per method, and each method's leading class of every cluster."""
    classes = imagenet_class_names()
    hierarchy = load_hierarchy()
    out: dict[str, tuple[list[str], list[int]]] = {}
    out["top mean (before)"] = (
        [cluster_name(m, classes) for m in means],
        [int(np.argmax(m)) for m in means],
    )
    for method in ("auto", "dominant", "distinctive", "soft", "lift", "logodds"):
        lib = method if method in ("auto", "dominant", "distinctive") else "distinctive"
        sc = scored(means, sizes, method)
        namings = name_clusters(means, sizes, classes, method=lib, hierarchy=hierarchy, scores=sc)
        out[method] = ([n.name for n in namings], [n.lead for n in namings])
    return {m: v for m, v in out.items()}  # type: ignore[misc]


def accuracy(
    set_name: str, names: list[str], leads: list[int], labels: np.ndarray, truth: list[str]
) -> float:
    hierarchy = load_hierarchy()
    classes = imagenet_class_names()
    accepted = ACCEPTED[set_name]
    right = total = 0
    truth_arr = np.array(truth)
    for cid, (name, lead) in enumerate(zip(names, leads, strict=True)):
        members = truth_arr[labels == cid]
        if not len(members):
            continue
        folder = Counter(members).most_common(1)[0][0]
        if folder not in accepted:
            continue
        words = {w.split(" · ")[0].strip() for w in name.split(" / ")}
        ancestors = {hierarchy.lemma[w] for w in hierarchy.ancestors(hierarchy.classes[lead])}
        words |= ancestors | {short_name(classes[lead])}
        total += 1
        right += bool(words & accepted[folder])
    return right / max(total, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/bench-cache"))
    args = ap.parse_args()
    started = time.perf_counter()
    print("# Cluster names and groups (`bench/names.py`)\n")
    print("Model: EfficientNet-Lite0, int8 (the default); clusters: `--algorithm auto` "
          "(spectral), features: embedding.\n")  # fmt: skip
    naming, grouping, small = [], [], []
    for set_name, root in SETS.items():
        if not root.is_dir():
            print(f"({set_name}: {root} is missing; run bench/collect_photos.py; skipped)\n")
            continue
        stored = load_labelled(root, EmbedConfig(), args.cache / set_name)
        feats = make_features("embedding", logits=stored.logits, embedding=stored.embedding)
        truth = stored.truth
        n_classes = len(set(truth))
        rows_all = np.arange(len(truth))
        shown = {100: "100", default_k(len(truth)): "default", n_classes: "classes"}
        for k in (100, default_k(len(truth)), n_classes):
            if k not in shown:
                continue
            label = shown.pop(k)
            k_shown = f"{k}" if label == "100" else f"{k} ({label})"
            labels = cluster(feats, k, stored.paths)
            stats = class_statistics([(rows_all, stored.logits)], labels)
            ids = sorted(c for c in stats.cluster_scores if c >= 0)
            means = np.array([stats.cluster_scores[c] for c in ids])
            sizes = np.bincount(labels[labels >= 0]).astype(float)
            for method, (names, leads) in name_rows(set_name, means, sizes, labels, truth).items():
                # (a name's words, in any order: "valley / volcano" is "volcano / valley")
                base = [frozenset(n.split(" · ")[0].split(" / ")) for n in names]
                lead_share = Counter(leads).most_common(1)[0][1] / len(names)
                naming.append(
                    f"| {set_name} | {k_shown} | {method} | {len(set(base)) / len(names):.2f} | "
                    f"{len(set(names)) / len(names):.2f} | {lead_share:.2f} | "
                    f"{accuracy(set_name, names, leads, labels, truth):.2f} |"
                )
            if k != 100:
                continue
            direct = nmi(truth, cluster(feats, n_classes, stored.paths))
            centroids = np.array([feats[labels == c].mean(0) for c in ids])
            for method in LINKAGES:
                for cut in CUTS:
                    _, groups, _ = build_tree(
                        centroids, sizes, method=method, cut=cut, features=feats, labels=labels
                    )
                    score = nmi(truth, groups[labels])
                    grouping.append(
                        f"| {set_name} | {method} | {cut} | {groups.max() + 1} | {score:.3f} | "
                        f"{direct:.3f} | {score - direct:+.3f} |"
                    )
        rng = np.random.default_rng(0)
        for n in (100, 200, 500, 1000, len(truth)):
            if n > len(truth):
                continue
            rows = np.sort(rng.choice(len(truth), n, replace=False))
            sub, sub_truth = feats[rows], [truth[i] for i in rows]
            sub_paths = [stored.paths[i] for i in rows]
            for rule, k in (("100", 100), ("n/10", n // 10), ("n/20", n // 20),
                            ("n/30", n // 30), ("sqrt(n)", round(np.sqrt(n))),
                            ("1.6 sqrt(n) (default)", min(100, round(1.6 * np.sqrt(n)))),
                            ("auto", None)):  # fmt: skip
                k = None if k is None else max(2, min(k, n))
                labels = cluster(sub, k, sub_paths)
                m = labels.max() + 1
                sizes = np.bincount(labels).astype(float)
                centroids = np.array([sub[labels == c].mean(0) for c in range(m)])
                _, groups, _ = build_tree(centroids, sizes, features=sub, labels=labels)
                purity = sum(Counter(np.array(sub_truth)[labels == c]).most_common(1)[0][1]
                             for c in range(m)) / n  # fmt: skip
                small.append(
                    f"| {set_name} | {n} | {rule} | {m} | {m / len(set(sub_truth)):.1f} | "
                    f"{purity:.3f} | {nmi(sub_truth, labels):.3f} | "
                    f"{nmi(sub_truth, groups[labels]):.3f} |"
                )
    print("## Names\n")
    print("| set | k | method | distinct base names / k | distinct names / k (numbered) | "
          "led by the commonest class | name accuracy |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print("\n".join(naming))
    print("\n## Groups at k = 100 (NMI against the folders)\n")
    print("| set | linkage | cut | groups | group-level NMI | direct NMI at k = classes | Δ |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(grouping))
    print("\n## Small collections (random subsets; groups: Ward linkage, modularity cut)\n")
    print("| set | photos | k rule | clusters | clusters per class | purity | NMI | group NMI |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(small))
    print(f"\n{time.perf_counter() - started:.0f} s in all.")


if __name__ == "__main__":
    main()
