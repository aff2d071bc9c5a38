"""The WordNet hypernyms of the 1,000 ImageNet classes: broader words for names.

The data is vendored in ``imgclust/data/imagenet_hierarchy.json``, made by
``tools/make_imagenet_hierarchy.py`` from WordNet 3.0 as Debian's ``wordnet-base`` ships it
(WordNet 3.0 licence, Princeton University: use and redistribution with its notice, which the
file carries). No WordNet install and no network at run time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources

#: Synsets too vague to name anything a person looks for ("artifact", "whole", ...): a
#: common ancestor this general is no better than the leaves' own words.
VAGUE = frozenset(
    {
        "entity", "physical entity", "abstraction", "object", "whole", "artifact",
        "instrumentality", "matter", "solid", "substance", "material", "living thing",
        "organism", "being", "structure", "device", "container", "covering", "commodity",
        "equipment", "implement", "attribute", "relation", "thing", "part", "unit",
        "geological formation", "natural object", "causal agent", "person", "conveyance",
        "way", "location", "system", "creation", "product", "article", "group", "measure",
    }
)  # fmt: skip


class Hierarchy:
    """Ancestors and depths of the ImageNet classes in WordNet 3.0's noun hierarchy."""

    def __init__(
        self, classes: Sequence[str], lemma: dict[str, str], parents: dict[str, list[str]]
    ):
        self.classes = list(classes)
        self.lemma = lemma
        self.parents = parents

    @functools.cache  # noqa: B019 (one Hierarchy per process: load() is cached too)
    def depth(self, wnid: str) -> int:
        """Steps from the root (``entity`` is 0), by the shortest hypernym path."""
        ups = self.parents.get(wnid, [])
        return 0 if not ups else 1 + min(self.depth(p) for p in ups)

    @functools.cache  # noqa: B019
    def ancestors(self, wnid: str) -> frozenset[str]:
        """``wnid`` and every synset above it."""
        out = {wnid}
        for p in self.parents.get(wnid, []):
            out |= self.ancestors(p)
        return frozenset(out)

    def common(self, class_ids: Sequence[int]) -> str | None:
        """The most specific word that covers every class in ``class_ids`` ("citrus" for
        lemon and orange), or ``None`` when the only one is too vague to help."""
        if not class_ids:
            return None
        shared = frozenset.intersection(*(self.ancestors(self.classes[i]) for i in class_ids))
        if not shared:
            return None
        # The lowest common ancestors: shared synsets below no other shared one (depth alone
        # misleads where a synset has two parents: "edible fruit" is also under "fruit").
        lowest = [w for w in shared if not any(w in self.ancestors(v) for v in shared - {w})]
        best = max(lowest, key=lambda w: (self.depth(w), w))
        word = self.lemma[best]
        return None if word in VAGUE or self.depth(best) < 4 else word


@functools.cache
def load() -> Hierarchy:
    """The vendored hierarchy (read once)."""
    text = (resources.files("imgclust") / "data" / "imagenet_hierarchy.json").read_text("utf-8")
    data = json.loads(text)
    return Hierarchy(data["classes"], data["lemma"], data["parents"])
