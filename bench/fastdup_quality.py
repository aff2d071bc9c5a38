"""fastdup's clusters beside imgclust's on the labelled sets (NMI / ARI / purity).

fastdup (pip package ``fastdup``, in its own environment: ``--fastdup-python``) groups a
folder into connected components of its similarity graph. This bench runs it with its default
model and settings on each labelled set and scores three groupings against the class folders:

* fastdup's own connected components, as it reports them;
* fastdup's features (its 576-d embeddings) clustered by imgclust's default clusterer with
  k = the number of classes, which separates its features from its grouping;
* imgclust with every default (``imgclust evaluate DIR --k K``).

Run by hand:
    PYTHONPATH=src python bench/fastdup_quality.py --fastdup-python /tmp/fdvenv/bin/python
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from imgclust.cluster import make_clusterer
from imgclust.cluster.features import l2_normalize
from imgclust.config import ClusterConfig
from imgclust.evaluate import evaluate, group_of, score

FASTDUP_RUN = """
import os, sys
os.environ["SENTRY_OPT_OUT"] = "1"
import fastdup
fd = fastdup.create(work_dir=sys.argv[2], input_dir=sys.argv[1])
fd.run(overwrite=True, verbose=False)
"""


def run_fastdup(python: str, folder: Path, work: Path) -> float:
    """Run fastdup on ``folder`` into ``work``; its wall time in seconds."""
    env = dict(os.environ, SENTRY_OPT_OUT="1", PYTHONPATH="")
    start = time.perf_counter()
    subprocess.run(
        [python, "-c", FASTDUP_RUN, str(folder), str(work)], check=True, env=env,
        capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def fastdup_outputs(work: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, features (n, 576), component id per path) from fastdup's work folder."""
    with open(work / "atrain_features.dat.csv", newline="") as fh:
        paths = [row["filename"] for row in csv.DictReader(fh)]
    feats = np.fromfile(work / "atrain_features.dat", dtype="<f4").reshape(len(paths), -1)
    component = np.arange(len(paths)) + 10**9  # not in a component: a group of its own
    with open(work / "connected_components.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            component[int(row["__id"])] = int(row["component_id"])
    return paths, feats, component


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fastdup-python", required=True)
    ap.add_argument("--datasets", type=Path, default=Path(__file__).parents[2] / "shared/datasets")
    ap.add_argument("--cache-root", type=Path, default=Path("/tmp"))
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results/fastdup-quality.md"
    )
    args = ap.parse_args()
    rows = []
    for folder in sorted(p for p in args.datasets.iterdir() if p.is_dir()):
        name = folder.name.split("-")[0]
        with tempfile.TemporaryDirectory(prefix="fastdup-quality-") as tmp:
            seconds = run_fastdup(args.fastdup_python, folder, Path(tmp))
            paths, feats, component = fastdup_outputs(Path(tmp))
        truth = [group_of(p, folder.resolve()) for p in paths]
        k = len(set(truth))
        own = score(truth, component)
        n_groups = len(np.unique(component))
        labels = make_clusterer("auto", k).fit(l2_normalize(feats)).labels_
        theirs = score(truth, labels)
        ours = evaluate(
            folder, k=k, cluster=ClusterConfig(), cache_dir=args.cache_root / f"cache-{name}"
        )
        rows.append((folder.name, len(paths), k, own, n_groups, seconds, theirs, ours.scores))
        print(rows[-1], flush=True)

    def fmt(s: object) -> str:
        return f"{s.nmi:.3f} / {s.ari:.3f} / {s.purity:.3f}"  # type: ignore[attr-defined]

    lines = [
        "# fastdup's clusters beside imgclust's (bench/fastdup_quality.py)",
        "",
        "NMI / ARI / purity against the class folders. fastdup 2.54, default model and "
        "settings; imgclust with every default (int8 Lite0, `auto` → spectral), k = classes.",
        "",
        "| set | images | classes | fastdup components (count, s) | fastdup features + "
        "imgclust's clusterer | imgclust default |",
        "|---|---|---|---|---|---|",
    ]
    for set_name, n, k, own, groups, secs, theirs, ours in rows:
        lines.append(
            f"| {set_name} | {n} | {k} | {fmt(own)} ({groups} components, {secs:.1f} s) | "
            f"{fmt(theirs)} | **{fmt(ours)}** |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
