"""The process executor: the same outputs as a serial render, shots in several worker processes, a worker's
failure or death as a clear error naming the shot, SIGTERM as a clean interrupted stop with no process
left behind, and the demo's stills composed side by side, byte for byte the same."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from storyengine.backends.motion import MotionBackend
from storyengine.errors import StoryEngineError
from storyengine.executors import LocalExecutor, ProcessExecutor, choose, executor_for, map_in_processes
from storyengine.continuity import chains
from storyengine.registry import Registry
from storyengine.render import render_series
from storyengine.settings import Settings
from storyengine.workspace import Workspace
from test_resume import SERIES, make_workspace


@pytest.fixture(scope="module")
def base(tmp_path_factory, astronaut):
    return make_workspace(tmp_path_factory.mktemp("parallel_base") / "ws", astronaut)


class _Recorder:
    """A reporter that keeps the per-shot bar calls: (start, total, description) and (update, done, shot)."""

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def start(self, key, description, total):
        if key.startswith("shot:"):
            self.seen.append(("start", total, description))

    def update(self, key, completed, description=None):
        if key.startswith("shot:"):
            self.seen.append(("update", completed, key[5:]))

    def done(self, key):
        pass


def _copy(base, dest: Path) -> tuple[Workspace, Path]:
    ws, spec = base
    shutil.copytree(ws.root, dest)
    return Workspace.at(dest), dest / spec.relative_to(ws.root)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _outputs(ws: Workspace) -> dict:
    """Everything a render leaves that must not depend on where the shots ran."""
    series = ws.renders / SERIES
    reg = Registry.open(ws)
    takes = [tuple(r) for r in reg.db.execute(
        "select episode_id, shot_id, take, seed, path, num_frames, decision, reason, keep_start, keep_end, findings, "
        "used, cache_key, generated from takes order by id")]
    eps = [tuple(r) for r in reg.db.execute("select episode_id, path, duration, frames, shots_used, key from episodes "
                                            "order by id")]
    reg.close()
    report = json.loads((series / "report.json").read_text())
    for k in ("run", "started_at", "finished_at"):
        report.pop(k, None)
    files = {p.relative_to(series).as_posix(): _sha(p) for p in sorted(series.rglob("*.mp4"))}
    return {"takes": takes, "episodes": eps, "report": report, "files": files}


class ChattyBackend(MotionBackend):
    """The motion back-end, logging a warning per shot (from the worker process it runs in)."""

    def generate(self, plan, progress=None):
        logging.getLogger("storyengine.test").warning("shot %s generated in pid %d", plan.shot_id, os.getpid())
        return super().generate(plan, progress)


def test_process_executor_renders_the_same_bytes_as_a_serial_render(base, tmp_path, caplog):
    """Unsigned (signatures carry a time), a render in 2 worker processes writes the same take and episode
    files (sha256), the same SQLite rows in the same order, and the same report as one in this process;
    the workers' progress and log lines reach the driver."""
    out = {}
    for kind in ("local", "process"):
        ws, spec = _copy(base, tmp_path / kind)
        settings = Settings.load(ws.root, executor=kind, workers=2, sign=False)
        caplog.clear()
        seen: list[tuple[str, int, str]] = []
        reporter = _Recorder(seen)
        res = render_series(ws, spec, settings=settings, backend=ChattyBackend(), reporter=reporter)
        logged = {r.getMessage().split()[1]: int(r.getMessage().split()[-1]) for r in caplog.records
                  if r.name == "storyengine.test"}
        assert logged == {s.plan.shot_id: s.worker for s in res.shots}
        # every shot's bar is started when its take is generated and reaches the take's last frame
        for shot in ("face", "b", "c", "d"):
            assert ("start", 12, f"{shot} take 1: generating") in seen, (shot, seen)
            assert ("update", 12, shot) in seen, (shot, seen)
        out[kind] = _outputs(ws)
        pids = {s.plan.shot_id: s.worker for s in res.shots}
        if kind == "local":
            assert set(pids.values()) == {os.getpid()}
        else:  # 4 chains over 2 workers, none in this process
            assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        assert [s.plan.shot_id for s in res.shots] == ["face", "b", "c", "d"]  # recorded in plan order
    assert len(out["local"]["takes"]) == 4 and len(out["local"]["files"]) >= 10
    assert {t[6] for t in out["local"]["takes"]} == {"accept"}
    assert out["process"] == out["local"]


def test_auto_picks_processes_only_for_a_back_end_that_allows_it(base):
    from storyengine.backends.base import VideoBackend
    from storyengine.planner import load_series

    ws, spec = base
    s = Settings.load(ws.root)
    assert s.executor == "auto" and s.workers == 0
    assert MotionBackend.parallel_processes and not VideoBackend.parallel_processes
    from storyengine.backends.wan import WanBackend  # a diffusers back-end: one 14B pipeline per GPU, never N

    assert not WanBackend.parallel_processes
    reg = Registry.open(ws)
    from storyengine.planner import plan_series

    ch = chains(plan_series(load_series(spec), spec, reg, ws))
    reg.close()
    assert len(ch) == 4
    # the test series is tiny (4 x 12 frames at 160x120): starting workers would cost more than it saves
    assert choose("auto", MotionBackend, ch, 2) == "local"
    big = [[p.model_copy(update={"width": 640, "height": 360, "num_frames": 96})] for c in ch for p in c]
    assert choose("auto", MotionBackend, big, 2) == "process"
    assert choose("auto", MotionBackend, big, 1) == "local"  # one worker: no point
    assert choose("auto", WanBackend, big, 2) == "local"
    assert choose("process", WanBackend, ch, 2) == "process"  # asked for explicitly
    assert isinstance(executor_for(Settings.load(ws.root, executor="process"), "motion", {}, ch), ProcessExecutor)
    # a back-end object handed in stays in this process under auto
    assert isinstance(executor_for(s, "motion", {}, big, MotionBackend()), LocalExecutor)
    with pytest.raises(StoryEngineError, match="setting 'executor' has an invalid value 'gpu'"):
        Settings.load(ws.root, executor="gpu")
    with pytest.raises(StoryEngineError, match="setting 'workers'"):
        Settings.load(ws.root, workers=-1)


class FailingBackend(MotionBackend):
    """Fails on shot ``c`` (in a worker process: this module is imported there by name)."""

    def generate(self, plan, progress=None):
        if plan.shot_id == "c":
            raise ZeroDivisionError("a bug in a back-end")
        return super().generate(plan, progress)


class DyingBackend(MotionBackend):
    """Its worker process dies (SIGKILL, as the out-of-memory killer does) on shot ``d``."""

    def generate(self, plan, progress=None):
        if plan.shot_id == "d":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().generate(plan, progress)


@pytest.mark.parametrize("cls, match", [
    (FailingBackend, r"shot 'c' failed in worker process \d+: ZeroDivisionError: a bug in a back-end \(at .*test_parallel.py:\d+\)"),
    (DyingBackend, r"a worker process died \(pid \d+ killed by signal 9\) while rendering shot\(s\) 'd'"),
])
def test_a_worker_failure_is_an_error_naming_the_shot(base, tmp_path, cls, match):
    ws, spec = _copy(base, tmp_path / "ws")
    settings = Settings.load(ws.root, executor="process", workers=2, sign=False)
    mine = psutil.Process().children(recursive=True)
    with pytest.raises(StoryEngineError, match=match):
        render_series(ws, spec, settings=settings, backend=cls())
    reg = Registry.open(ws)
    assert [r["status"] for r in reg.db.query("select status from runs")] == ["failed"]
    reg.close()
    # every worker (and its ffmpeg) stopped and waited for; a worker's descriptor process exits by itself when its
    # stdin closes (it may be finishing a batch or still loading its model: on a loaded machine, a second or two)
    deadline, left = time.monotonic() + 10, [None]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in psutil.Process().children(recursive=True) if p not in mine and _alive(p)
                and "resource_tracker" not in " ".join(_cmdline(p))]  # multiprocessing's tracker lives as long as pytest
    assert not left, [(p.pid, _cmdline(p)) for p in left]
    assert not [p for p in (ws.renders / SERIES / "cache" / "takes").iterdir() if p.name.startswith(".")]


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_sigterm_during_a_parallel_render_is_interrupted_and_leaves_no_process(base, tmp_path):
    """`kill PID` of `storyengine render` while two workers write takes: exit 130, the run says
    `interrupted`, no temp file is left, and every worker (and its ffmpeg) is gone."""
    ws, spec = _copy(base, tmp_path / "ws")
    env = {**os.environ, "STORYENGINE_EXECUTOR": "process", "STORYENGINE_WORKERS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "storyengine", "render", str(spec), "-w", str(ws.root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    takes = ws.renders / SERIES / "cache" / "takes"
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        for p in _tree(proc.pid):
            seen.setdefault(p.pid, p)
        writing = takes.is_dir() and any(p.name.startswith(".") for p in takes.iterdir())
        workers = [p for p in seen.values() if "multiprocessing" in " ".join(_cmdline(p))]
        if writing and len(workers) >= 2:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the render finished before two workers were writing takes")
    proc.send_signal(signal.SIGTERM)
    rc, err = proc.wait(timeout=60), proc.stderr.read().decode()
    assert rc == 130, err[-2000:]
    assert "interrupted (run " in err and "Traceback" not in err, err[-2000:]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in seen.values()):
        time.sleep(0.1)
    assert not [p.pid for p in seen.values() if _alive(p)], "processes left behind"
    assert not [p.name for p in takes.iterdir() if p.name.startswith(".")]
    reg = Registry.open(ws)
    assert [r["status"] for r in reg.db.query("select status from runs")] == ["interrupted"]
    reg.close()


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_map_in_processes_keeps_order_and_uses_workers():
    out = map_in_processes(_square, list(range(6)), workers=2)
    assert [v for v, _ in out] == [x * x for x in range(6)]
    assert os.getpid() not in {pid for _, pid in out}
    assert {pid for _, pid in map_in_processes(_square, [1, 2], workers=1)} == {os.getpid()}


def test_demo_stills_composed_in_processes_are_the_same_bytes(tmp_path):
    from storyengine.demo import write_stills_and_spec

    files = {}
    for w in (1, 2):
        ws = Workspace.at(tmp_path / str(w)).ensure()
        write_stills_and_spec(ws, days=2, width=160, height=90, seconds=1.0, workers=w)
        files[w] = {p.relative_to(ws.root).as_posix(): _sha(p) for p in sorted(ws.episodes.rglob("*")) if p.is_file()}
    assert len(files[1]) == 9  # 4 stills, 4 mattes, the spec
    assert files[1] == files[2]
