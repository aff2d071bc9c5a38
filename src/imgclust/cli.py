"""Command line: thin commands over the library; the only place that catches ImgclustError."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .exceptions import ImgclustError

app = typer.Typer(
    help="Group photo collections by what an ImageNet-trained CNN sees in them.",
    no_args_is_help=True,
    add_completion=False,
    # An unexpected error reaches main(), which logs it to a file; no rich traceback here.
    pretty_exceptions_enable=False,
    # Click's plain help: typer's rich panels print type placeholders (<list[Path]>) and
    # eat bracketed text as markup.
    rich_markup_mode=None,
)
# soft_wrap: paths are printed whole, never wrapped or cut at 80 columns when piped.
console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
_DEBUG = False
#: The summary prints this many notes at most (the rest are in OUT/.imgclust/run.json).
MAX_NOTES = 12


def _argument_type_hidden(self: Any, ctx: Any) -> None:
    return None


# typer (0.2x) prints an argument's Python type in --help ("PHOTOS <list[Path]>"); the
# metavar already says what to give. Options show their metavar and are left alone.
if hasattr(typer.core, "TyperArgument"):
    typer.core.TyperArgument.display_type_rich = _argument_type_hidden  # type: ignore[method-assign]

FEATURES_HELP = (
    "What is clustered: embedding (L2-normalised pooled embedding), embedding-centred "
    "(minus the collection's mean), logits, scores (softmax class scores) or sqrt-scores."
)
DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N."


def _algorithm_help() -> str:
    from .cluster import clusterer_help

    return "Clustering algorithm. " + clusterer_help() + "."


ALGORITHM_HELP = _algorithm_help()


class _Rate(ProgressColumn):
    """Images per second of the stage since it started.

    Not rich's own speed: that is measured between the first and last progress update,
    and batches in flight finish in bursts, so two updates a millisecond apart read as
    tens of thousands of images per second.
    """

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        # Stages of one step (scan, model, cluster) count no images; a stage over in a
        # blink (thumbnails already made) has no rate worth showing.
        if not elapsed or elapsed < 0.05 or task.completed < 2:
            return Text("")
        return Text(f"{task.completed / elapsed:,.1f} img/s", style="cyan")


class RichProgress:
    """The pipeline's :class:`~imgclust.pipeline.Progress` drawn with rich."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, stage: str, total: int | None = None) -> None:
        self._task = self._progress.add_task(stage, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def finish(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[-1]
            self._progress.update(
                self._task, total=task.completed or 1, completed=task.completed or 1
            )
            self._task = None


def _fail(exc: ImgclustError) -> typer.Exit:
    # The message is text, never rich markup (a path may hold "[...]"), and printed whole.
    console.print(Text.assemble(("error:", "bold red"), f" {exc}"))
    return typer.Exit(code=2)


def _with_progress(quiet: bool, work: Callable[[Any], T]) -> T:
    """``work(progress)`` with rich progress bars (``None`` when quiet); errors are printed."""
    try:
        if quiet:
            return work(None)
        with RichProgress(console) as progress:
            return work(progress)
    except ImgclustError as exc:
        raise _fail(exc) from exc


def _summary(result: Any) -> None:
    from .steps import plural

    n_good, n_all = len(result.paths), result.n_scanned
    tree = result.clustering.tree
    groups = (
        f" in {plural(tree.n_groups, 'group')}" if tree is not None and tree.n_groups > 1 else ""
    )
    console.print(
        f"[bold green]{plural(n_good, 'good image')} of {n_all:,}[/] clustered into "
        f"[bold]{plural(result.k, 'cluster')}[/]{groups} ({len(result.rejected):,} rejected; "
        f"{result.n_embedded:,} embedded now, {result.n_cached:,} from the store)"
    )
    shown = result.notes if len(result.notes) <= MAX_NOTES else result.notes[: MAX_NOTES - 1]
    for note in shown:
        console.print(f"  [yellow]note:[/] {note}")
    if len(shown) < len(result.notes):  # (a long review journal carried over: a note an edit)
        rest = len(result.notes) - len(shown)
        run_json = result.out_dir / ".imgclust" / "run.json"
        console.print(f"  [yellow]note:[/] {rest} more notes: {run_json} has them all")
    for old, parts in result.refined.items():
        if len(parts) > 1:
            ids = ", ".join(f"#{p}" for p in parts)
            console.print(f"  cluster #{old} of the last report is now clusters {ids}")
        else:
            console.print(
                f"  cluster #{old} stays whole: its photos do not part into clusters (it is "
                f"#{parts[0]} now)"
            )
    if result.n_new:
        console.print(f"  re-clustered: {plural(result.n_new, 'new image')} since the last run")
    for folder in result.skipped:
        console.print(
            f"  skipped {folder}: an imgclust output or export folder (or inside one), not photos"
        )
    if result.rejected:
        console.print(f"  rejected files and reasons: {result.out_dir / 'rejected.csv'}")
    if result.assigned_inputs:
        console.print(
            f"  also clustered {len(result.assigned_inputs)} input(s) added earlier with "
            "`imgclust assign`: " + ", ".join(result.assigned_inputs)
        )
    for path in result.assigned_missing:
        console.print(
            f"  [yellow]dropped[/] {path} (added with `imgclust assign`): it no longer exists; "
            "assign its photos again to keep them"
        )
    console.print(f"  assignments: {result.out_dir / 'assignments.csv'}")
    console.print(f"  report: [link={result.report.as_uri()}]{result.report}[/link]")


def _opt(help: str, metavar: str, default: str | None = None, *names: str) -> Any:
    """A ``typer.Option`` whose default is shown as ``default`` (the library's, applied when
    the option is not given, so a config file's value stands)."""
    return typer.Option(*names, help=help, metavar=metavar, show_default=default or False)


Photos = Annotated[
    list[str],  # not Path: it would fold s3://bucket into s3:/bucket
    typer.Argument(
        help="Folders (searched recursively), image files, or s3:// gs:// file:// URIs "
        "(the endpoint and credentials from the environment: AWS_ENDPOINT_URL_S3, ...).",
        metavar="PHOTOS",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
KOpt = Annotated[
    str | None,
    _opt(
        "Number of clusters, or 'auto' (chosen by kNN-graph modularity on a sample). The "
        "default is 100, and 1.6·√n for fewer than 3,900 photos (e.g. 28 for 300); a k above "
        "the number of photos is lowered to it. The summary says which k ran. Clusters are "
        "also gathered into named groups (a tree over the clusters).",
        "N|auto",
        "100, or 1.6·√n below 3,900 photos",
    ),
]
AlgorithmOpt = Annotated[str | None, _opt(ALGORITHM_HELP, "NAME", "auto")]
FeaturesOpt = Annotated[str | None, _opt(FEATURES_HELP, "KIND", "embedding")]
ModelOpt = Annotated[
    str | None,
    _opt(
        "Model name (see `imgclust models`) or timm:<name>.",
        "NAME",
        "efficientnet_lite0, offline",
    ),
]
PrecisionOpt = Annotated[
    str | None,
    _opt(
        "Model precision: auto (int8 when openvino runs the model on the CPU, else fp32), fp32 "
        "(the model's own features: torch's within 1e-3), bf16 (~2x fp32 on CPUs with AVX-512 "
        "BF16 or AMX) or int8 (~3x fp32; calibrated once, cached). Each is its own feature "
        "space, stored apart.",
        "NAME",
        "auto",
    ),
]
WorkersOpt = Annotated[
    int | None,
    _opt("Decode processes (0: in the command's own process; at most 256).", "N",
         "one per core, max 8"),
]  # fmt: skip
DeviceOpt = Annotated[str | None, _opt(DEVICE_HELP, "DEVICE", "auto")]
BatchOpt = Annotated[int | None, _opt("Images per forward pass.", "N", "64")]
TimeoutOpt = Annotated[
    float | None,
    _opt(
        "Seconds one file may take to decode before it is rejected (at most 86400).",
        "SECONDS",
        "30",
    ),
]
RuntimeOpt = Annotated[
    str | None,
    _opt(
        "Inference runtime: auto (openvino on the CPU when installed, else torch), torch or "
        "openvino.",
        "NAME",
        "auto",
    ),
]
SeedOpt = Annotated[int | None, _opt("Random seed of the clustering.", "N", "0")]
CacheOpt = Annotated[
    Path | None, _opt("Feature store folder.", "DIR", "OUT/.imgclust/store", "--cache")
]
ShardOpt = Annotated[
    int | None, _opt("Images per feature-store shard (the most a kill loses).", "N", "1024")
]
RefineOpt = Annotated[
    list[int] | None,
    _opt(
        "Split this cluster of OUT's current report again (repeatable); the other clusters "
        "keep their images. Needs the same photos as that run.",
        "CLUSTER",
    ),
]
RefineKOpt = Annotated[
    str | None, _opt("Parts per refined cluster: a number, or 'auto'.", "N|auto", "auto")
]
DupOpt = Annotated[
    float | None,
    _opt(
        "Cosine distance under which photos of a cluster are near-duplicates, shown as one "
        "tile (0: off).",
        "DISTANCE",
        "0.1",
    ),
]
NamesOpt = Annotated[
    str | None,
    _opt(
        "How clusters are named: auto (the classes strongest in the cluster, and where one "
        "would lead over a tenth of the names, what sets each apart), distinctive (always "
        "what sets a cluster apart from the collection) or dominant (the strongest classes). "
        "Names never repeat; broader WordNet words name mixed leaves (citrus, motor vehicle).",
        "HOW",
        "auto",
    ),
]
ConfigOpt = Annotated[
    Path | None, _opt("TOML config file; command-line options win over it.", "FILE")
]


@app.command()
def run(
    inputs: Photos,
    out: Annotated[Path, _opt("Output folder for report and CSVs.", "DIR", None, "--out", "-o")],
    k: KOpt = None,
    algorithm: AlgorithmOpt = None,
    features: FeaturesOpt = None,
    model: ModelOpt = None,
    cache_dir: CacheOpt = None,
    batch_size: BatchOpt = None,
    shard_size: ShardOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    decode_timeout: TimeoutOpt = None,
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = None,
    seed: SeedOpt = None,
    refine: RefineOpt = None,
    refine_k: RefineKOpt = None,
    dup_threshold: DupOpt = None,
    names: NamesOpt = None,
    engine: Annotated[
        str | None,
        _opt(
            "Where photos are embedded: local (this machine) or ray (a Ray cluster; "
            "pip install 'imgclust[ray]'; PHOTOS and OUT on storage every node sees).",
            "local|ray",
            "local",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        _opt("With --engine ray: HOST:PORT of a Ray cluster.", "HOST:PORT", "a local Ray"),
    ] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """Cluster the photos in PHOTOS and write an HTML gallery and CSVs to OUT.

    Example: imgclust run ~/Pictures --out clusters --k 50; then split cluster 7 of that
    report: imgclust run ~/Pictures --out clusters --refine 7
    """
    # Every other parameter is named as its config field: they go to the config by name.
    options = {n: v for n, v in locals().items() if n not in ("inputs", "out", "config", "quiet")}
    options["refine"] = tuple(refine) if refine else None
    from .config import load_config, options_by_section
    from .pipeline import run as run_pipeline

    def work(progress: Any) -> Any:
        cfg = load_config(inputs, out, config_file=config, overrides=options_by_section(options))
        return run_pipeline(cfg, progress=progress)

    _summary(_with_progress(quiet, work))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.", metavar="DIR")] = Path(
        "demo-out"
    ),
    photos: Annotated[
        Path, typer.Option(help="Where the demo photos are written.", metavar="DIR")
    ] = Path("demo-photos"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build a sample folder from scikit-image's photos and cluster it.

    Example: imgclust demo --out demo-out
    """
    from .config import ClusterConfig, RunConfig
    from .demo import DEMO_SOURCES, make_demo_photos
    from .pipeline import run as run_pipeline

    def work(progress: Any) -> Any:
        folder = make_demo_photos(photos)
        console.print(f"demo photos: {folder} ({len(DEMO_SOURCES)} scenes, several variants each)")
        cfg = RunConfig(inputs=(folder,), out=out, cluster=ClusterConfig(k=len(DEMO_SOURCES)))
        return run_pipeline(cfg, progress=progress)

    _summary(_with_progress(quiet, work))


@app.command("export")
def export_cmd(
    out: Annotated[
        Path | None, typer.Argument(help="Output folder of `imgclust run` to export.")
    ] = None,
    to: Annotated[  # (text: typer makes "" the current folder, as Path("") is)
        str | None,
        typer.Option("--to", help="Destination: one folder per cluster goes here.", metavar="DEST"),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="symlink (default), copy, or move (journalled, undoable).")
    ] = "symlink",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; touch nothing.")
    ] = False,
    undo_to: Annotated[
        str | None,
        typer.Option("--undo", help="Undo the exports into this folder.", metavar="DEST"),
    ] = None,
) -> None:
    """Lay the photos of a run out as one folder per cluster, or undo that.

    Example: imgclust export clusters --to sorted --mode move; imgclust export --undo sorted
    """
    from .export import EXPORT_MODES, export, plan_export, undo_export

    def say(text: str) -> None:
        # Whole paths, never wrapped or cut (also when piped), never read as rich markup.
        console.print(text, soft_wrap=True, markup=False, highlight=False, emoji=False)

    def count(n: int, one: str, many: str = "") -> str:
        return f"{n:,} {one}" if n == 1 else f"{n:,} {many or one + 's'}"

    for name, value in (("--to", to), ("--undo", undo_to)):
        if value is not None and not value.strip():
            raise typer.BadParameter(f"{name} needs a folder, not {value!r}")
    undo = None if undo_to is None else Path(undo_to)
    if undo is not None and dry_run:  # (an undo has no plan to print: it would just run)
        raise typer.BadParameter("--dry-run shows an export's plan; give it without --undo")
    if undo is not None and (out is not None or to is not None):  # (else one is ignored)
        raise typer.BadParameter("--undo DEST undoes what is in DEST: give it without OUT or --to")
    try:
        if undo is not None:
            done = undo_export(undo)
            say(
                f"export into {undo} undone: {count(done.restored, 'moved photo')} put back, "
                f"{count(done.removed, 'copy or link', 'copies or links')} removed"
            )
            for path in done.kept_edited:
                say(f"  kept, changed since the export: {path}")
            for path in done.kept_blocked:
                say(f"  kept, its original changed or is gone, or another is in its place: {path}")
            if done.journalled:
                say(
                    f"  ({count(len(done.journalled), 'moved photo')} still journalled: once the "
                    f"file in its place is gone, `imgclust export --undo {undo}` again)"
                )
            for path in done.not_found:
                say(f"  not found in {undo}, so not put back: {path}")
            return
        if out is None or to is None:
            raise typer.BadParameter("give OUT and --to DEST, or --undo DEST")
        if mode not in EXPORT_MODES:
            raise typer.BadParameter(f"--mode must be one of {', '.join(EXPORT_MODES)}")
        if dry_run:
            plan = plan_export(out, to, mode=mode)  # type: ignore[arg-type]
            for step in plan.steps:
                typer.echo(f"{mode}: {step.source} -> {step.target}")
        else:
            plan = export(out, to, mode=mode)  # type: ignore[arg-type]
    except ImgclustError as exc:
        # As `_fail` does, but unwrapped: the paths in the message must survive a pipe whole.
        console.print(Text.assemble(("error:", "bold red"), f" {exc}"), soft_wrap=True)
        raise typer.Exit(code=2) from exc
    for path in plan.missing:
        say(f"  missing (moved or deleted since the run), skipped: {path}")
    if plan.already:
        say(f"{count(len(plan.already), 'photo')} already exported into {to}, skipped")
    if not dry_run:
        say(f"{count(len(plan.steps), 'photo')} exported into {to} ({mode})")
    if plan.beside:
        modes = " and ".join(sorted({m for m, _ in plan.beside}))
        say(
            f"  {count(len(plan.beside), 'photo')} also in {to} from an earlier {modes} export "
            f"(e.g. {plan.beside[0][1].target}): this {mode} export "
            + ("puts" if dry_run else "put")
            + f" a second one beside each; for one only, `imgclust export --undo {to}` first"
        )
    if dry_run:
        return
    if mode == "move" and (plan.steps or plan.already):
        say(f"  to put them back: imgclust export --undo {to}")


@app.command()
def assign(
    new: Annotated[
        list[str],  # not Path: it would fold s3://bucket into s3:/bucket
        typer.Argument(
            help="Folders or images with the new photos, or s3:// gs:// file:// URIs.",
            metavar="PHOTOS",
        ),
    ],
    into: Annotated[Path, _opt("Output folder of an earlier run.", "DIR", None, "--into")],
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchOpt = None,
    decode_timeout: TimeoutOpt = None,
    runtime: RuntimeOpt = None,
    quiet: Quiet = False,
) -> None:
    """Add new photos to the clusters of an earlier run, without clustering again.

    Example: imgclust assign ~/Pictures/2025-06 --into clusters
    """
    from rich.markup import escape

    from .assign import assign_folder
    from .config import EmbedConfig
    from .steps import plural

    given: dict[str, Any] = {"workers": workers, "device": device, "batch_size": batch_size,
             "decode_timeout": decode_timeout, "runtime": runtime}  # fmt: skip

    def work(progress: Any) -> Any:
        embed = EmbedConfig(**{n: v for n, v in given.items() if v is not None})
        return assign_folder(new, into, embed=embed, progress=progress)

    result = _with_progress(quiet, work)
    counts = (
        f"{len(result.rejected):,} rejected, {result.n_known:,} already in the collection; "
        f"{plural(result.n_total, 'image')} now"
    )
    if result.names:
        console.print(
            f"[bold green]{plural(len(result.paths), 'new image')} assigned[/] to existing "
            f"clusters ({plural(int(result.outliers.sum()), 'outlier')}, {counts})"
        )
    else:  # (an hdbscan run that found no dense group: there is no cluster to go to)
        console.print(
            f"[bold green]{plural(len(result.paths), 'new image')} added[/], unclustered: "
            f"this clustering has no clusters ({counts})"
        )
    for folder in result.skipped:
        console.print(
            f"  skipped {escape(folder)}: an imgclust output or export folder (or inside one), "
            "not photos"
        )
    if result.n_changed:
        console.print(
            f"  note: {plural(result.n_changed, 'file')} of the collection changed since "
            "clustered: kept as clustered; `imgclust run` embeds and clusters "
            + ("it" if result.n_changed == 1 else "them")
            + " again"
        )
    for path, label, dist, out in zip(
        result.paths, result.labels, result.distances, result.outliers, strict=True
    ):
        flag = " [yellow]outlier[/]" if out else ""
        shown = escape(path)  # (a name like "IMG[1].jpg" is no markup)
        if 0 <= label < len(result.names):
            name = escape(result.names[label])
            console.print(f"  #{label} {name}  {dist:.3f}{flag}  {shown}")
        else:  # (no centre to be at a distance from)
            console.print(f"  unclustered  {shown}")
    folder = escape(str(into))
    if result.remembered:
        console.print(
            f"  remembered in {folder}: `imgclust run ... --out {folder}` will cluster these "
            "photos too"
        )
    console.print(f"  report: [link={result.report.as_uri()}]{escape(str(result.report))}[/link]")


@app.command()
def similar(
    image: Annotated[
        str,  # not Path: it would fold s3://bucket into s3:/bucket
        typer.Argument(help="An image (a path or a URI), in or out of it.", metavar="IMAGE"),
    ],
    in_: Annotated[Path, _opt("Output folder of an earlier run.", "DIR", None, "--in")],
    n: Annotated[int, typer.Option("-n", help="How many similar images.", metavar="N")] = 20,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, metavar="DEVICE")] = "auto",
) -> None:
    """The photos of a clustered collection most similar to IMAGE, with distances.

    Example: imgclust similar beach.jpg --in clusters -n 10
    """
    from .similar import find_similar

    try:
        if n < 1:
            raise typer.BadParameter("-n must be at least 1")
        result = find_similar(image, in_, n=n, device=device)
    except ImgclustError as exc:
        raise _fail(exc) from exc
    where = "in the collection" if result.in_collection else "new, embedded now"
    rows = [
        (str(i), f"{nb.distance:.4f}", f"#{nb.cluster} {nb.cluster_name}"
         + (" (outlier)" if nb.outlier else ""), nb.path)
        for i, nb in enumerate(result.neighbours, start=1)
    ]  # fmt: skip
    _print_table(
        f"nearest to {result.query} ({where})", ("#", "distance", "cluster", "image"), rows
    )
    console.print(f"  page: [link={result.page.as_uri()}]{result.page}[/link]")


def _print_table(title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """A rich table on a terminal; tab-separated lines when piped (paths whole, greppable)."""
    if not sys.stdout.isatty():
        typer.echo("\t".join(columns))
        for row in rows:
            typer.echo("\t".join(row))
        return
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col in ("#", "distance") else "left")
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


@app.command()
def evaluate(
    labelled_dir: Annotated[
        Path,
        typer.Argument(help="Folder whose sub-folders are the true groups.", metavar="DIR"),
    ],
    k: Annotated[
        str | None, _opt("Clusters: a number, or 'auto'.", "N|auto", "number of sub-folders")
    ] = None,
    features: FeaturesOpt = None,
    algorithm: AlgorithmOpt = None,
    model: ModelOpt = None,
    precision: PrecisionOpt = None,
    cache: Annotated[
        Path,
        _opt("Feature store folder; reuse it to skip embedding.", "DIR", ".imgclust-eval-cache"),
    ] = Path(".imgclust-eval-cache"),
    seed: SeedOpt = None,
) -> None:
    """Cluster a labelled folder and print NMI, ARI and purity against its sub-folders.

    Example: imgclust evaluate datasets/scenes --k 6 --cache /tmp/cache-scenes
    """
    from .config import load_config, options_by_section
    from .evaluate import evaluate as run_evaluate
    from .steps import plural

    options = {"features": features, "algorithm": algorithm, "model": model,
               "precision": precision, "seed": seed}  # fmt: skip
    try:
        cfg = load_config((labelled_dir,), cache, overrides=options_by_section(options))
        result = run_evaluate(
            labelled_dir, k=k, embed=cfg.embed, cluster=cfg.cluster, cache_dir=cache
        )
    except ImgclustError as exc:
        raise _fail(exc) from exc
    s = result.scores
    typer.echo(
        f"images {result.n_images}  groups {result.n_groups}  clusters {result.k}  "
        f"NMI {s.nmi:.3f}  ARI {s.ari:.3f}  purity {s.purity:.3f}  seconds {result.seconds:.1f}"
    )
    left: list[str] = []
    if result.n_outside:
        left.append(
            f"{plural(result.n_outside, 'image')} directly in {labelled_dir}, in no sub-folder"
        )
    if result.n_rejected:
        left.append(f"{plural(result.n_rejected, 'file')} that could not be read or decoded")
    if left:
        typer.echo("left out: " + "; ".join(left))
    if result.n_noise:
        typer.echo(
            f"unclustered: {plural(result.n_noise, 'image')} in no dense group (as `run` "
            f"leaves them), scored as one more cluster"
        )
    # (said, as it is a folder the user did not name when --cache is left out)
    typer.echo(f"features kept in {cache.resolve()}: the next evaluate with it embeds nothing")


@app.command("models")
def list_models_cmd() -> None:
    """List the built-in models and whether they work offline.

    Example: imgclust models
    """
    from .models import get_spec, list_models, model_availability

    for name in list_models():
        spec = get_spec(name)
        missing = model_availability(name)
        status = "installed" if missing is None else f"not installed ({missing})"
        typer.echo(f"{name:20s} {spec.preprocess.input_size}px  {spec.description}  [{status}]")
    typer.echo("timm:<name>          any timm ImageNet-1k model (weights from the hub)")


@app.command("review")
def review_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder of `imgclust run`.", metavar="OUT")],
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            help="Port on 127.0.0.1 to listen on.",
            metavar="N",
            show_default="a free port",
            min=0,
            max=65535,
        ),
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the address; do not open a browser.")
    ] = False,
) -> None:
    """Rename, merge, split and move clusters in a local web app; Ctrl-C stops it.

    Every edit is journalled in OUT and written at once to its report, CSVs and saved
    clustering (assign, similar and export follow it). Example: imgclust review clusters
    """
    from .review.app import review

    def ready(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    try:
        review(out, port=port, open_browser=not no_browser, on_ready=ready)
    except ImgclustError as exc:
        raise _fail(exc) from exc
    console.print(f"review of {out} stopped; its edits are saved")


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the traceback of an unexpected error.")
    ] = False,
) -> None:
    global _DEBUG
    _DEBUG = debug
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, systemd), raised where the command is, as Ctrl-C is:
    the same clean stop (Ray's processes and folder, decode workers, locks)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _interrupted(exc: BaseException) -> None:
    if _caused_by(exc, _Terminated):
        console.print("[yellow]terminated[/]: what was finished is kept; run again to resume")
        sys.exit(128 + signal.SIGTERM)
    console.print("[yellow]interrupted[/]: what was finished is kept; run again to resume")
    sys.exit(130)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in ``exc``'s chain of causes and contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def main() -> None:
    """The ``imgclust`` command: the app, with every unexpected error logged to a file.

    An expected failure (bad input, a busy folder) is an :class:`ImgclustError`, printed by
    the command with its fix. Anything else is a bug: one line says so and where the
    traceback was written (``--debug`` prints it instead).
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except SystemExit as exc:  # Typer turns Ctrl-C inside a command into a silent exit 130
        if exc.code == 130 and _caused_by(exc, KeyboardInterrupt):
            _interrupted(exc)
        raise
    except Exception as exc:
        if _DEBUG:
            raise
        log = _write_crash_log()
        console.print(
            f"[bold red]imgclust failed unexpectedly:[/] {type(exc).__name__}: {exc}\n"
            f"  the traceback is in {log} (run again with --debug to print it); "
            "please report it"
        )
        sys.exit(1)


def _write_crash_log() -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"imgclust-error-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(" ".join(sys.argv) + "\n\n" + traceback.format_exc())
    return path


if __name__ == "__main__":  # pragma: no cover
    main()
