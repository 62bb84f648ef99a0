"""The command line as a newcomer and a script meet it: --version, -w before the command, the workspace
inferred from a spec's path, read-only commands that create nothing, `init`, --json, progress lines."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

import storyengine
from storyengine.cli import app

CLI = Path(storyengine.__file__).parent / "cli"


def run(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def inited(tmp_path):
    """`storyengine init` in a fresh folder, with two more episodes added to its spec."""
    w = tmp_path / "show"
    r = run("init", w, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    spec = Path(doc["spec"])
    data = yaml.safe_load(spec.read_text())
    for n in (2, 3):
        ep = json.loads(json.dumps(data["episodes"][0]))
        ep["id"], ep["shots"][0]["id"] = f"episode-{n}", f"opening-{n}"
        data["episodes"].append(ep)
    spec.with_name("three.yaml").write_text(yaml.safe_dump({**data, "series": "three"}, sort_keys=False))
    return w, doc


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and r.stdout == f"storyengine {storyengine.__version__}\n"


def test_init_writes_a_commented_spec_that_plans_cleanly(inited):
    w, doc = inited
    assert doc == {"workspace": str(w.resolve()), "spec": str(w.resolve() / "episodes" / "show.yaml"),
                   "still": str(w.resolve() / "episodes" / "stills" / "opening.png"), "created": True}
    assert {"characters", "episodes", "renders"} <= set(tree(w))
    text = Path(doc["spec"]).read_text()
    assert text.count("#") >= 15 and "storyengine plan episodes/show.yaml" in text
    r = run("plan", doc["spec"], "--json")  # no -w: the workspace is the folder above episodes/
    assert r.exit_code == 0 and r.stderr == "", r.output  # no warnings either
    (plan,) = json.loads(r.stdout)
    assert (plan["series"], plan["shot_id"], plan["num_frames"], plan["width"], plan["height"]) == ("show", "opening", 96, 640, 360)
    r = run("render", doc["spec"], "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"spec": doc["spec"], "render": 1, "cached": 0, "shots": [
        {"episode": "episode-1", "shot": "opening", "action": "render", "why": "never rendered"}]}
    again = run("init", w)
    assert again.exit_code == 1 and "show.yaml already exists; pass --name" in again.stderr and again.stdout == ""


def test_repeated_options_keep_every_value(inited):
    w, _ = inited
    r = run("plan", w / "episodes" / "three.yaml", "-e", "episode-1", "-e", "episode-3", "--json")
    assert r.exit_code == 0, r.output
    assert [p["episode_id"] for p in json.loads(r.stdout)] == ["episode-1", "episode-3"]


def test_workspace_before_the_command_from_the_environment_and_after(inited, tmp_path, monkeypatch):
    w, _ = inited
    monkeypatch.chdir(tmp_path)
    after = run("character", "list", "-w", w, "--json")
    before = run("-w", w, "character", "list", "--json")
    env = run("character", "list", "--json", env={"STORYENGINE_WORKSPACE": str(w)})
    assert after.exit_code == before.exit_code == env.exit_code == 0, (after.output, before.output, env.output)
    assert json.loads(after.stdout) == json.loads(before.stdout) == json.loads(env.stdout) == []
    # the command's own -w wins over the one before it
    other = tmp_path / "empty"
    other.mkdir()
    r = run("-w", w, "character", "list", "-w", other)
    assert r.exit_code == 1 and f"{other} is not a storyengine workspace" in r.stderr


@pytest.mark.parametrize("args", [["report"], ["character", "list"], ["character", "show", "mara"], ["takes", "opening"],
                                  ["plan", "{spec}"], ["render", "{spec}"], ["render", "{spec}", "--dry-run"],
                                  ["check", "{spec}", "-c", "mara"]],
                         ids=lambda a: " ".join(a))
def test_a_folder_that_is_not_a_workspace_is_left_alone(args, inited, tmp_path, monkeypatch):
    """Run from the wrong folder (a spec outside any episodes/ folder), every command says so and creates nothing."""
    w, doc = inited
    loose = tmp_path / "loose.yaml"
    loose.write_text(Path(doc["spec"]).read_text())
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    r = run(*[a.replace("{spec}", str(loose)) for a in args])
    assert r.exit_code == (3 if args[0] == "check" else 1), r.output  # check: 1 and 2 are trim and reject
    assert r.stderr.startswith(f"error: {empty} is not a storyengine workspace") and "storyengine init" in r.stderr
    assert r.stdout == "" and tree(empty) == []


def test_the_workspace_is_inferred_from_the_spec_path(inited, tmp_path, monkeypatch):
    w, doc = inited
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    relative = "../" + Path(doc["spec"]).relative_to(tmp_path.resolve()).as_posix()  # ../show/episodes/show.yaml
    r = run("render", relative, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "1 of 1 shot(s) would render; 0 cached" in r.stdout and tree(empty) == []


def test_command_modules_do_not_import_the_app():
    """app.py imports the command modules; none of them imports app.py (no import circle)."""
    for path in CLI.glob("*.py"):
        if path.name in ("app.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import … / from . import …
                imported = [node.module] if node.module else [a.name for a in node.names]
                assert "app" not in imported and "__init__" not in imported, path.name


def test_piped_progress_is_one_line_per_finished_shot_and_quiet_is_silent():
    from storyengine.cli import common

    buf = io.StringIO()
    common.reset()
    rep = common.LineReporter(Console(file=buf, width=40))
    rep.start("series", "s: 0/2 shots", 2)
    rep.start("shot:a", "a generating", 48)
    for i in range(1, 48):
        rep.update("shot:a", i)
    rep.update("series", 1, "s: 1/2 shots  day-1 1/2 · a very long episode summary that must not wrap")
    rep.update("series", 1, "s: 1/2 shots  (the same count again)")
    rep.start("stitch", "day-1: stitching", 1)
    rep.done("stitch")
    rep.update("series", 2, "s: 2/2 shots")
    lines = buf.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "s: 1/2 shots  day-1 1/2 · a very long episode summary that must not wrap", "day-1: stitching", "stitched",
        "s: 2/2 shots"]
    common.reset(verbosity=1)  # --verbose: a line per shot stage too, even on a terminal
    buf = io.StringIO()
    rep = common.LineReporter(Console(file=buf, width=40))
    rep.start("shot:a", "a generating", 48)
    rep.start("shot:a", "a checking", 48)
    assert [line.split("] ", 1)[1] for line in buf.getvalue().splitlines()] == ["a generating", "a checking"]
    with common.progress() as lines:
        assert isinstance(lines, common.LineReporter)
    common.reset(verbosity=-1)
    with common.progress() as quiet:
        assert type(quiet).__name__ == "_Silent"
    common.reset()


def test_quiet_and_verbose(inited):
    w, doc = inited
    loud = run("plan", doc["spec"])
    quiet = run("-q", "plan", doc["spec"])
    assert loud.exit_code == quiet.exit_code == 0 and loud.stdout == quiet.stdout  # results stay
    r = run("-q", "-v", "plan", doc["spec"])
    assert r.exit_code == 2 and "--quiet and --verbose exclude each other" in r.stderr
    r = run("-q", "init", w, "--name", "second")
    assert r.exit_code == 0 and "next:" not in r.stdout and (w / "episodes" / "second.yaml").is_file()


def test_piped_summary_lines_are_never_wrapped(inited):
    w, doc = inited
    r = run("init", w, "--name", "a-series-with-a-name-long-enough-to-push-the-line-past-eighty-columns",
            env={"COLUMNS": "40"})
    assert r.exit_code == 0, r.output
    assert any(line.startswith("spec: ") and line.endswith(".yaml") and len(line) > 80 for line in r.stdout.splitlines())


def test_render_json_then_a_cached_rerun(inited):
    """`render --json` on the init template (made small): one shot accepted and stitched; the re-run renders nothing."""
    w, doc = inited
    spec = Path(doc["spec"])
    spec.write_text(spec.read_text().replace("width: 640 ", "width: 160 ").replace("height: 360", "height: 96")
                    .replace("duration: 4.0 ", "duration: 1.0 "))
    first = run("render", spec, "--json")
    assert first.exit_code == 0, first.output
    a = json.loads(first.stdout)
    assert (a["series"], a["accepted"], a["total"], a["takes"]) == ("show", 1, 1, {"generated": 1, "cached": 0})
    (shot,) = a["shots"]
    assert (shot["episode"], shot["shot"], shot["verdict"], shot["takes"]) == ("episode-1", "opening", "accept", 1)
    (ep,) = a["episodes"]
    assert Path(ep["path"]).is_file() and ep["used"] == ["opening"] and ep["rejected"] == [] and not ep["reused"]
    assert ep["duration"] == pytest.approx(1.0 + 2.0 - 0.75, abs=0.05)  # title card 2 s, crossfade 0.75 s
    assert Path(a["report"]).is_file() and json.loads(Path(a["report"]).read_text())["series"] == "show"
    assert any(line.endswith("show: 1/1 shots  episode-1 1/1") for line in first.stderr.splitlines())
    again = json.loads(run("render", spec, "--json").stdout)
    assert again["takes"] == {"generated": 0, "cached": 1} and again["episodes"][0]["reused"]


def test_a_card_and_handle_or_flags_exclude_each_other(tmp_path):
    card = Path(__file__).resolve().parents[1] / "characters" / "mara.yaml"
    r = run("character", "add", "--from", card, "mara", "-w", tmp_path)
    assert r.exit_code == 1 and "either --from CARD or HANDLE PHOTO..., not both" in r.stderr
    r = run("character", "add", "--from", card, "--name", "Other", "--consent", "x", "-w", tmp_path)
    assert r.exit_code == 1 and "--name, --consent: the card" in r.stderr and tree(tmp_path) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("handle: Mara!\nphotos:\n  - source: skimage:astronaut\n    crop: [10, 10, 5, 5]\n")
    r = run("character", "add", "--from", bad, "-w", tmp_path / "ws")
    assert r.exit_code == 1 and f"{bad}:1: handle:" in r.stderr and f"{bad}:4: photos.0.crop:" in r.stderr
    assert not (tmp_path / "ws").exists()  # a bad card is refused before the workspace is made


def test_nested_spec_folders_find_their_workspace(inited, tmp_path, monkeypatch):
    w, doc = inited
    nested = w / "episodes" / "season-1"
    nested.mkdir()
    text = Path(doc["spec"]).read_text().replace("still: stills/opening.png", "still: ../stills/opening.png")
    (nested / "show.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    r = run("plan", nested / "show.yaml", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["still"] == str(w.resolve() / "episodes" / "stills" / "opening.png")


def test_card_photo_sources_files_and_derivations(tmp_path):
    """A card's photo: a file beside the card, cropped, mirrored and relit in that order; errors name card and field."""
    import numpy as np
    from PIL import Image

    from storyengine.cards import card_images, load_card
    from storyengine.errors import SpecError

    rgb = np.arange(40 * 30 * 3, dtype=np.uint32).reshape(30, 40, 3).astype(np.uint8)
    (tmp_path / "photos").mkdir()
    Image.fromarray(rgb).save(tmp_path / "photos" / "p.png")
    card = tmp_path / "pip.yaml"
    card.write_text("handle: pip\nkind: pet\nphotos:\n  - source: photos/p.png\n"
                    "  - {source: photos/p.png, crop: [5, 2, 25, 12], flip: true, tint: [1.0, 0.5, 2.0], gain: 1.5, offset: -3}\n")
    plain, derived = card_images(load_card(card), card)
    assert np.array_equal(plain, rgb)
    want = np.clip(rgb[2:12, 5:25][:, ::-1].astype(np.float32) * np.array([1.0, 0.5, 2.0]) * 1.5 - 3, 0, 255).astype(np.uint8)
    assert derived.shape == (10, 20, 3) and np.array_equal(derived, want)
    card.write_text("handle: pip\nphotos:\n  - {source: photos/p.png, crop: [0, 0, 41, 30]}\n")
    with pytest.raises(SpecError, match=r"pip.yaml: photos.0: crop \[0, 0, 41, 30\] reaches outside the 40x30 image"):
        card_images(load_card(card), card)
    card.write_text("handle: pip\nphotos:\n  - source: photos/missing.png\n")
    with pytest.raises(SpecError, match=r"photo not found: .*photos/missing.png"):
        card_images(load_card(card), card)
    card.write_text("handle: pip\nphotos: []\nlicense: typo\n")
    with pytest.raises(SpecError) as e:
        load_card(card)
    assert "pip.yaml:2: photos: List should have at least 1 item" in str(e.value) and "pip.yaml:3: license: Extra inputs" in str(e.value)
