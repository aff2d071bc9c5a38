"""Issue-2 check, run by hand: `imgclust run` on a labelled folder, twice, side by side.

Prints NMI against the sub-folders, images clustered/rejected, and the first and second run's
wall time (the second must embed nothing and take a small fraction of the first).

    .venv/bin/python bench/rerun.py ../shared/datasets/intel-scenes-dev \
        ../shared/datasets/coil100-dev
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sklearn.metrics import normalized_mutual_info_score


def _run(folder: Path, out: Path, k: int) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(folder), "--out", str(out),
           "--k", str(k), "--quiet"]  # fmt: skip
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def main(folders: list[str]) -> None:
    print("| set | images | rejected | k | NMI | first run s | second run s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name in folders:
        folder = Path(name).resolve()
        k = sum(1 for p in folder.iterdir() if p.is_dir())
        out = Path(tempfile.mkdtemp()) / "out"
        first = _run(folder, out, k)
        second = _run(folder, out, k)
        with open(out / "assignments.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        with open(out / "rejected.csv", newline="") as fh:
            n_rejected = sum(1 for _ in csv.DictReader(fh))
        truth = [Path(r["path"]).relative_to(folder).parts[0] for r in rows]
        nmi = normalized_mutual_info_score(truth, [r["cluster"] for r in rows])
        print(f"| {folder.name} | {len(rows)} | {n_rejected} | {k} | {nmi:.3f} | {first:.1f} "
              f"| {second:.1f} | {second / first:.2f} |", flush=True)  # fmt: skip
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main(sys.argv[1:])
