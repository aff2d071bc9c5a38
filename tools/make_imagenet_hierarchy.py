"""Write src/imgclust/data/imagenet_hierarchy.json: the WordNet 3.0 hypernyms of the 1,000
ImageNet-1k classes, for cluster and group names ("citrus", "fruit", "motor vehicle").

Source: WordNet 3.0's noun database as Debian's package ``wordnet-base`` installs it
(``apt-get install wordnet-base``: /usr/share/wordnet/data.noun; the WordNet 3.0 licence,
Princeton University, permits use and redistribution with its notice, kept in the file).
The ImageNet class order is timm's ``imagenet_synsets.txt`` (the order of the model's
scores). Only the 1,000 classes and their ancestors are kept (a few hundred KB), so imgclust
needs no WordNet at run time and no network. Run by hand when either source changes:

    .venv/bin/python tools/make_imagenet_hierarchy.py
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

DATA_NOUN = Path("/usr/share/wordnet/data.noun")
OUT = Path(__file__).resolve().parents[1] / "src/imgclust/data/imagenet_hierarchy.json"
NOTICE = (
    "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. THIS SOFTWARE "
    "AND DATABASE IS PROVIDED 'AS IS' AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR "
    "WARRANTIES, EXPRESS OR IMPLIED. Permission to use, copy, modify and distribute this "
    "software and database and its documentation for any purpose and without fee or royalty "
    "is hereby granted, provided that you agree to comply with the following copyright "
    "notice and statements, including the disclaimer, and that the same appear on ALL copies "
    "of the software, database and documentation, including modifications that you make for "
    "internal use or for distribution. (WordNet 3.0 license; /usr/share/doc/wordnet-base/copyright)"
)


def read_nouns() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Every noun synset's first lemma and its hypernyms (``@`` and instance ``@i``)."""
    lemma: dict[str, str] = {}
    parents: dict[str, list[str]] = {}
    for line in DATA_NOUN.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue  # the licence header
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        wnid = f"n{offset}"
        lemma[wnid] = fields[4].replace("_", " ")
        at = 4 + 2 * n_words
        n_pointers = int(fields[at])
        ups = []
        for p in range(n_pointers):
            symbol, target, pos = fields[at + 1 + 4 * p : at + 4 + 4 * p]
            if symbol in ("@", "@i") and pos == "n":
                ups.append(f"n{target}")
        parents[wnid] = ups
    return lemma, parents


def main() -> None:
    synsets = (resources.files("timm") / "data/_info/imagenet_synsets.txt").read_text().split()
    assert len(synsets) == 1000, len(synsets)
    lemma, parents = read_nouns()
    keep: set[str] = set()
    stack = list(synsets)
    while stack:
        wnid = stack.pop()
        if wnid not in keep:
            keep.add(wnid)
            stack.extend(parents[wnid])
    data = {
        "source": "WordNet 3.0 (Debian wordnet-base), classes in timm's imagenet_synsets.txt order",
        "licence": NOTICE,
        "classes": synsets,
        "lemma": {w: lemma[w] for w in sorted(keep)},
        "parents": {w: parents[w] for w in sorted(keep) if parents[w]},
    }
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{OUT}: {len(keep)} synsets, {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
