"""The CLI: every command documented with an example, errors printed with their fix."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from imgclust.cli import app

runner = CliRunner()


def _commands() -> dict[str, Any]:
    group: Any = typer.main.get_command(app)  # typer vendors its own click
    return dict(group.commands)


def test_every_command_has_help_and_an_example() -> None:
    for name, command in _commands().items():
        assert command.help and "Example:" in command.help, name
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.name} has no help"


def test_run_on_a_folder(demo_photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    folders = [str(demo_photos / "coffee"), str(demo_photos / "moon")]
    args = ["run", *folders, "--out", str(out), "--k", "2", "--quiet", "--workers", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "16 good images of 16" in result.output.replace("\n", " ")
    with open(out / "assignments.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_folder: dict[str, set[str]] = {}
    for r in rows:
        by_folder.setdefault(Path(r["path"]).parent.name, set()).add(r["cluster"])
    assert by_folder["coffee"] != by_folder["moon"] and all(len(v) == 1 for v in by_folder.values())


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_bad_option_value_is_a_clear_error(tmp_path: Path) -> None:
    args = ["run", str(tmp_path), "--out", str(tmp_path / "o"), "--features", "pixels"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "unknown features" in result.output


def test_models_lists_the_offline_default() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "efficientnet_lite0" in result.output


def _assignments(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "assignments.csv", newline="") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def test_photos_added_by_assign_stay_in_the_next_run(demo_photos: Path, tmp_path: Path) -> None:
    from PIL import Image

    out, new = tmp_path / "out", tmp_path / "elsewhere" / "new"
    folders = [str(demo_photos / "coffee"), str(demo_photos / "moon")]
    base = [*folders, "--out", str(out), "--quiet", "--workers", "0"]
    assert runner.invoke(app, ["run", *base, "--k", "2"]).exit_code == 0
    new.mkdir(parents=True)
    for src in sorted((demo_photos / "chelsea").glob("*.jpg"))[:3]:
        (new / src.name).write_bytes(src.read_bytes())
    original = sorted((demo_photos / "coffee").glob("*.jpg"))[0]
    resaved = new / "coffee-resaved.jpg"
    with Image.open(original) as im:
        im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(resaved, quality=90)

    assign = ["assign", str(new), "--into", str(out), "--quiet", "--workers", "0"]
    added = runner.invoke(app, assign)
    assert added.exit_code == 0, added.output
    assert "4 new images assigned" in added.output and "remembered" in added.output

    rerun = runner.invoke(app, ["run", *base, "--k", "3"])
    assert rerun.exit_code == 0, rerun.output
    text = " ".join(rerun.output.split())
    assert "also clustered 1 input(s) added earlier with `imgclust assign`" in text
    assert str(new.resolve()) in text.replace(" ", "")
    rows = _assignments(out)
    assert {str(p) for p in new.iterdir()} <= set(rows) and len(rows) == 16 + 4

    def leader(path: str) -> str:
        return rows[path]["duplicate_of"] or path

    assert leader(str(resaved)) == leader(str(original))  # a resized re-save: one tile

    shutil.rmtree(new)
    gone = runner.invoke(app, ["run", *base, "--k", "2", "--dup-threshold", "0"])
    assert gone.exit_code == 0, gone.output
    text = " ".join(gone.output.split())
    assert "dropped" in text and "no longer exists" in text
    rows = _assignments(out)
    assert len(rows) == 16 and all(r["duplicate_of"] == "" for r in rows.values())


def test_progress_rate_is_images_over_the_stages_time() -> None:
    # Two batches finishing a millisecond apart after 2 s of work: 100 images in 2 s is
    # 50 img/s, not the 100,000 img/s rich's own speed (between updates) would show.
    from rich.progress import Progress

    from imgclust.cli import _Rate

    now = [0.0]
    progress = Progress(get_time=lambda: now[0])
    task_id = progress.add_task("embed", total=100)
    now[0] = 1.999
    progress.advance(task_id, 50)
    now[0] = 2.0
    progress.advance(task_id, 50)
    task = progress.tasks[0]
    assert task.finished
    assert _Rate().render(task).plain == "50.0 img/s"


def test_progress_rate_is_blank_for_one_step_stages_and_blinks() -> None:
    from rich.progress import Progress

    from imgclust.cli import _Rate

    now = [0.0]
    progress = Progress(get_time=lambda: now[0])
    one = progress.add_task("cluster", total=1)
    blink = progress.add_task("thumbnails", total=96)
    now[0] = 0.01
    progress.advance(blink, 96)
    now[0] = 0.5
    progress.advance(one, 1)
    assert _Rate().render(progress.tasks[0]).plain == ""
    assert _Rate().render(progress.tasks[1]).plain == ""


def test_summary_prints_at_most_max_notes_and_says_where_the_rest_are(
    demo_photos: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    import dataclasses
    import io

    from rich.console import Console

    import imgclust
    import imgclust.cli as cli

    config = imgclust.RunConfig(
        inputs=[demo_photos / "coffee"], out=tmp_path / "out", cluster=imgclust.ClusterConfig(k=2)
    )
    result = imgclust.run(config)
    base = list(result.notes)
    for extra in (0, cli.MAX_NOTES - len(base), cli.MAX_NOTES - len(base) + 1, 40):
        notes = base + [f"carried edit {i}" for i in range(max(extra, 0))]
        buffer = io.StringIO()
        monkeypatch.setattr(cli, "console", Console(file=buffer, width=300))
        cli._summary(dataclasses.replace(result, notes=notes))
        printed = [line for line in buffer.getvalue().splitlines() if "note:" in line]
        assert len(printed) == min(len(notes), cli.MAX_NOTES)
        if len(notes) > cli.MAX_NOTES:
            rest = len(notes) - cli.MAX_NOTES + 1
            assert f"{rest} more notes: " in printed[-1] and "run.json" in printed[-1]
        else:
            assert not any("more notes" in line for line in printed)


def test_one_photo_is_one_good_image_in_the_summary_and_the_index(
    demo_photos: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "one"
    photos.mkdir()
    shutil.copy(sorted(demo_photos.rglob("*.jpg"))[0], photos / "a.jpg")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(photos), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 good image of 1 clustered into 1 cluster " in result.output.replace("\n", " ")
    assert "1 good image of 1 · 1 cluster ·" in (out / "index.html").read_text("utf-8")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:9", "gpu", "cuda:x", "meta", "mps"])
@pytest.mark.parametrize("command", ["run", "assign", "similar"])  # (evaluate: no --device)
def test_a_device_this_machine_lacks_is_refused_before_any_work(
    demo_photos: Path, tmp_path: Path, command: str, device: str
) -> None:
    """(CI's machine has no GPU: every CUDA device is one it lacks.) Refused at once with
    the option's name and what to use, no traceback, nothing written."""
    import imgclust.embed as embed_mod

    if embed_mod._may_have_cuda() and device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    out = tmp_path / "out"
    photo = str(next(p for p in sorted(demo_photos.rglob("*")) if p.is_file()))
    args = {
        "run": ["run", str(demo_photos), "--out", str(out)],
        "assign": ["assign", photo, "--into", str(tmp_path / "nowhere")],
        "similar": ["similar", photo, "--in", str(tmp_path / "nowhere")],
    }[command]
    res = CliRunner().invoke(app, [*args, "--device", device])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "unexpectedly" not in res.output
    assert f"--device {device}" in res.output or f"--device '{device}'" in res.output
    assert any(w in res.output for w in ("--device cpu", "use cpu", "on cpu or cuda"))
    assert not out.exists() and not (tmp_path / "nowhere").exists()


def test_a_cuda_index_past_the_machines_devices_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with two GPUs, cuda:2 names none of them (cuda:0 and cuda:1 do)."""
    import torch

    import imgclust.embed as embed_mod
    from imgclust.exceptions import ConfigError

    monkeypatch.setattr(embed_mod, "_may_have_cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for ok in ("cuda", "cuda:0", "cuda:1", "cpu", "auto"):
        embed_mod.check_device(ok)
    with pytest.raises(ConfigError, match=r"has 2 CUDA devices \(cuda:0 to cuda:1\)"):
        embed_mod.check_device("cuda:2")


def test_a_local_ray_run_refuses_a_device_this_machine_lacks_too(
    demo_photos: Path, tmp_path: Path
) -> None:
    """A local Ray instance's workers have this machine's devices. (In a process of its own:
    Ray keeps the local instance's auth token for the rest of the process, which would
    refuse a later test's cluster.)"""
    import subprocess
    import sys

    pytest.importorskip("ray")
    import imgclust.embed as embed_mod

    if embed_mod._may_have_cuda():
        pytest.skip("this machine may have a CUDA device")
    out = tmp_path / "out"
    args = ["run", str(demo_photos), "--out", str(out), "--engine", "ray", "--device", "cuda"]
    res = subprocess.run(
        [sys.executable, "-m", "imgclust.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 2, res.stderr
    assert "--device cuda: this machine has no NVIDIA driver" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_nothing_to_cluster_counts_the_scans_rejects_among_the_candidates(tmp_path: Path) -> None:
    """A file the scan rejected (a dangling link) is one of the candidates the error counts:
    never more rejected than candidates."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "dangling.jpg").symlink_to(tmp_path / "nowhere")
    res = CliRunner().invoke(app, ["run", str(photos), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2, res.output
    assert "no image could be clustered: 2 candidate files, 2 rejected" in res.output


def test_demo_never_writes_into_a_folder_of_the_users(tmp_path: Path) -> None:
    """`--photos ~/Pictures` must not replace the user's photos with the demo's."""
    mine = tmp_path / "Pictures"
    (mine / "coffee").mkdir(parents=True)
    (mine / "coffee" / "coffee-0.jpg").write_bytes(b"my photo")
    (mine / "README.txt").write_text("my notes")
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["demo", "--photos", str(mine), "--out", str(out), "-q"])
    assert result.exit_code == 2 and "did not make" in result.output, result.output
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before
    assert not out.exists()
    (tmp_path / "a-file").write_text("x")
    result = CliRunner().invoke(app, ["demo", "--photos", str(tmp_path / "a-file"), "-q"])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_a_demo_folder_cut_short_is_made_whole(tmp_path: Path) -> None:
    from imgclust.demo import MARKER, make_demo_photos

    folder = tmp_path / "photos"
    (folder / "coffee").mkdir(parents=True)
    (folder / MARKER).write_text("")  # a demo killed while it wrote its photos
    (folder / "coffee" / "coffee-0.jpg").write_bytes(b"cut short")
    make_demo_photos(folder)
    assert (folder / ".demo-complete").exists()
    assert (folder / "coffee" / "coffee-0.jpg").read_bytes()[:2] == b"\xff\xd8"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (make_demo_photos(empty) / ".demo-complete").exists()  # an empty folder is fine
