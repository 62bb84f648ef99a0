"""Resumable renders: the take cache, re-runs that regenerate nothing, one edited shot, --dry-run,
the workspace lock, and a real `storyengine render` process killed with SIGKILL at several points."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from conftest import save
from storyengine import media
from storyengine.cli import app
from storyengine.lock import WorkspaceLock
from storyengine.register import register_character
from storyengine.registry import Registry
from storyengine.render import dry_run, render_series
from storyengine.settings import Settings
from storyengine.workspace import Workspace

SERIES = "resume"


def _still(rgb: np.ndarray, w: int = 160, h: int = 120) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.LANCZOS))


def make_workspace(root: Path, astronaut: np.ndarray) -> tuple[Workspace, Path]:
    """Mara registered from three photos; 2 episodes x 2 shots of 1 s at 12 fps, one of them checked for Mara."""
    ws = Workspace.at(root).ensure()
    a = astronaut
    photos = [save(root / "src" / "p1.png", a), save(root / "src" / "p2.jpg", a[:, ::-1].copy(), quality=88),
              save(root / "src" / "p3.png", np.clip(a[10:290, 30:370].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8))]
    reg = Registry.open(ws)
    register_character(reg, ws, "mara", photos, kind="person", name="Mara", settings=Settings.load(ws.root))
    reg.close()
    rng = np.random.default_rng(1)
    save(ws.episodes / "stills" / "face.png", _still(a[0:330, 40:480]))
    for name in ("b", "c", "d"):
        save(ws.episodes / "stills" / f"{name}.png", rng.integers(40, 200, (120, 160, 3), dtype=np.uint8))
    spec = {"series": SERIES, "fps": 12, "width": 160, "height": 120, "seed": 5,
            "episodes": [
                {"id": "ep-1", "title": "One", "title_duration": 0.5, "transition": {"type": "cut", "duration": 0},
                 "shots": [{"id": "face", "still": "stills/face.png", "characters": ["mara"], "duration": 1.0},
                           {"id": "b", "still": "stills/b.png", "duration": 1.0, "options": {"detect_faces": False}}]},
                {"id": "ep-2", "title": "Two", "title_duration": 0.5,
                 "shots": [{"id": "c", "still": "stills/c.png", "duration": 1.0, "options": {"detect_faces": False}},
                           {"id": "d", "still": "stills/d.png", "duration": 1.0, "options": {"detect_faces": False}}]}]}
    p = ws.episodes / f"{SERIES}.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    (ws.root / "storyengine.toml").write_text('[storyengine]\npreset = "ultrafast"\n')
    return ws, p


@pytest.fixture(scope="module")
def base(tmp_path_factory, astronaut):
    return make_workspace(tmp_path_factory.mktemp("resume_base") / "ws", astronaut)


@pytest.fixture
def fresh(base, tmp_path):
    ws, spec = base
    shutil.copytree(ws.root, tmp_path / "ws")
    new = Workspace.at(tmp_path / "ws")
    return new, new.root / spec.relative_to(ws.root)


def _cache_entries(ws: Workspace) -> dict[str, int]:
    d = ws.renders / SERIES / "cache" / "takes"
    return {p.stem: p.with_suffix(".mp4").stat().st_ino for p in d.glob("[!.]*.json")} if d.is_dir() else {}


def test_unchanged_rerun_generates_nothing_and_an_edit_rerenders_one_shot(fresh):
    ws, spec = fresh
    first = render_series(ws, spec)
    assert first.generated == 4 and all(not e.reused for e in first.episodes)
    assert {s.plan.shot_id: s.verdict.decision for s in first.shots} == {"face": "accept", "b": "accept", "c": "accept", "d": "accept"}
    eps = {e.episode_id: e.path.stat().st_mtime_ns for e in first.episodes}
    face_checked = next(s for s in first.shots if s.plan.shot_id == "face").takes[0]
    assert face_checked.checked and min(x.similarity for x in face_checked.scores if x.similarity is not None) > 0.9

    again = render_series(ws, spec)
    assert again.generated == 0
    assert all(e.reused for e in again.episodes) and {e.episode_id: e.path.stat().st_mtime_ns for e in again.episodes} == eps
    face_again = next(s for s in again.shots if s.plan.shot_id == "face").takes[0]
    assert not face_again.checked and face_again.scores == face_checked.scores  # verdict from the cache too
    reg = Registry.open(ws)
    rows = list(reg.db.query("select run_id, shot_id, generated, cache_key from takes order by id"))
    assert [r["generated"] for r in rows] == [1] * 4 + [0] * 4
    assert [r["cache_key"] for r in rows[:4]] == [r["cache_key"] for r in rows[4:]]
    reg.close()

    # edit one shot: only it is rendered, only its episode is stitched again
    data = yaml.safe_load(spec.read_text())
    data["episodes"][1]["shots"][1]["prompt"] = "a breath"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = {(r.shot_id): (r.action, r.why) for r in dry_run(ws, spec)}
    assert plan == {"face": ("cached", plan["face"][1]), "b": ("cached", plan["b"][1]), "c": ("cached", plan["c"][1]),
                    "d": ("render", "changed: prompt")}
    res = CliRunner().invoke(app, ["render", str(spec), "-w", str(ws.root), "--dry-run"])
    assert res.exit_code == 0 and "1 of 4 shot(s) would render; 3 cached" in res.output
    third = render_series(ws, spec)
    assert third.generated == 1 and [s.plan.shot_id for s in third.shots if s.generated] == ["d"]
    assert {e.episode_id: e.reused for e in third.episodes} == {"ep-1": True, "ep-2": False}


def test_a_changed_bound_rechecks_without_regenerating(fresh):
    ws, spec = fresh
    render_series(ws, spec)
    out = render_series(ws, spec, settings=Settings.load(ws.root, bound=0.999))
    face = next(s for s in out.shots if s.plan.shot_id == "face")
    # take 1 comes from the cache and is checked again; the retries it now needs are new takes
    assert not face.takes[0].generated and face.takes[0].checked and face.takes[0].decision == "retry"
    assert [t.generated for t in face.takes] == [False, True, True] and out.generated == 2
    assert face.verdict.decision == "reject" and "below bound 0.999" in face.verdict.reason


def test_a_second_render_of_the_workspace_is_refused_while_one_runs(fresh):
    ws, spec = fresh
    with WorkspaceLock(ws):
        res = CliRunner().invoke(app, ["render", str(spec), "-w", str(ws.root)])
    assert res.exit_code == 1
    assert f"is being rendered by pid {os.getpid()}" in res.output and "--wait SECONDS" in res.output
    assert not (ws.renders / SERIES).exists()  # nothing was written by the refused render


def _complete(ws: Workspace) -> None:
    """Every file under renders/ that has its final name is whole: cache entries match their recorded
    frame count, episodes decode to the end; the registry passes its integrity check."""
    series = ws.renders / SERIES
    for meta in (series / "cache" / "takes").glob("[!.]*.json") if (series / "cache" / "takes").is_dir() else []:
        m = json.loads(meta.read_text())
        assert media.count_frames(meta.with_suffix(".mp4")) == m["frames"]
    for mp4 in series.glob("[!.]*.mp4") if series.is_dir() else []:
        assert media.count_frames(mp4) > 0
    reg = Registry.open(ws)
    assert reg.db.execute("pragma integrity_check").fetchone()[0] == "ok"
    reg.close()


def _render_proc(ws: Workspace, spec: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from storyengine.cli import app; app()", "render", str(spec),
                             "-w", str(ws.root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())


def _kill_when(proc: subprocess.Popen, seen, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` as soon as ``seen()`` is true; False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if seen():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the kill point was never reached")


def test_kill_9_at_any_point_loses_no_finished_take(fresh):
    ws, spec = fresh
    takes = ws.renders / SERIES / "cache" / "takes"
    series = ws.renders / SERIES
    points = {
        "while a take is being written": lambda: takes.is_dir() and any(p.name.startswith(".") for p in takes.iterdir()),
        "between takes": lambda: len(list(takes.glob("[!.]*.json"))) >= 2 if takes.is_dir() else False,
        "while an episode is being stitched": lambda: series.is_dir() and any(
            p.name.startswith(".ep-") and p.suffix == ".mp4" for p in series.iterdir()),
    }
    kept: dict[str, int] = {}
    killed = []
    for name, seen in points.items():
        proc = _render_proc(ws, spec)
        if _kill_when(proc, seen):
            killed.append(name)
        _complete(ws)
        before = _cache_entries(ws)
        assert all(before.get(k) == ino for k, ino in kept.items()), f"a finished take was lost or rewritten ({name})"
        kept = before
    assert len(killed) >= 2, f"kill points reached: {killed}"
    print("killed:", killed)
    proc = _render_proc(ws, spec)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    _complete(ws)
    after = _cache_entries(ws)
    assert all(after.get(k) == ino for k, ino in kept.items())  # nothing finished was regenerated
    reg = Registry.open(ws)
    last = reg.db.execute("select max(id) from runs").fetchone()[0]
    generated = reg.db.execute("select count(*) from takes where run_id = ? and generated = 1", [last]).fetchone()[0]
    assert generated == 4 - len(kept)
    assert {r["status"] for r in reg.db.query("select status from runs")} <= {"running", "failed", "done"}
    eps = {r["episode_id"]: r for r in reg.db.query("select * from episodes where run_id = ?", [last])}
    reg.close()
    assert set(eps) == {"ep-1", "ep-2"}
    for e in eps.values():  # title 0.5 s + 2 x 1 s at 12 fps, less the crossfade overlaps
        n = media.count_frames(ws.root / e["path"])
        assert n == e["frames"] and n >= 18
    assert not [p for p in takes.iterdir() if p.name.startswith(".")]


def test_sigterm_while_an_episode_is_stitched_or_signed_is_a_clean_stop(fresh):
    """`kill PID` (SIGTERM) of a real render while an episode is staged (stitched, then signed, under
    `.ep-N.mp4.<hex>.mp4`): exit 130 with one line, the run row says `interrupted`, no staged file and
    no stitch folder of that process is left, and the next render completes without regenerating."""
    import tempfile

    ws, spec = fresh
    series = ws.renders / SERIES
    staged = lambda: series.is_dir() and any(p.name.startswith(".ep-") and p.suffix == ".mp4"  # noqa: E731
                                             for p in series.iterdir())
    proc = _render_proc(ws, spec)
    deadline = time.monotonic() + 120
    while not staged() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the render finished before an episode was staged (machine too fast to catch it)")
    proc.send_signal(signal.SIGTERM)
    rc, err = proc.wait(timeout=60), proc.stderr.read().decode()
    assert rc == 130, err[-2000:]
    assert err.endswith(f"run the same command again to resume\n") and "Traceback" not in err, err[-2000:]
    assert f"error: render of series '{SERIES}' interrupted (run " in err
    assert not [p.name for p in series.iterdir() if p.name.startswith(".")]
    assert not list(Path(tempfile.gettempdir()).glob(f"storyengine-stitch-{proc.pid}-*"))
    _complete(ws)
    kept = _cache_entries(ws)
    reg = Registry.open(ws)
    assert [r["status"] for r in reg.db.query("select status from runs")] == ["interrupted"]
    reg.close()
    proc = _render_proc(ws, spec)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    assert all(_cache_entries(ws).get(k) == ino for k, ino in kept.items())  # nothing finished generated again
