"""The Ray executor on a local instance (ray.init(num_cpus=2)): same frames and verdicts as a local
render, a worker killed mid-shot is retried with nothing lost, and a continued shot waits for its predecessor."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from storyengine import media
from storyengine.executors import RayExecutor
from storyengine.registry import Registry
from storyengine.render import render_series
from storyengine.workspace import Workspace
from test_resume import SERIES, make_workspace

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def base(tmp_path_factory, astronaut):
    ws, spec = make_workspace(tmp_path_factory.mktemp("ray_base") / "ws", astronaut)
    data = yaml.safe_load(spec.read_text())
    data["episodes"][1]["shots"][1]["still"] = "previous"  # d continues from c's last accepted frame
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    return ws, spec


def _copy(base, dest: Path) -> tuple[Workspace, Path]:
    ws, spec = base
    shutil.copytree(ws.root, dest)
    new = Workspace.at(dest)
    return new, new.root / spec.relative_to(ws.root)


def _frames_sha(path: Path) -> str:
    h = hashlib.sha256()
    for f in media.iter_frames(path):
        h.update(f.tobytes())
    return h.hexdigest()


def _summary(out) -> dict:
    return {s.plan.shot_id: {"decision": s.verdict.decision, "keep": (s.verdict.keep_start, s.verdict.keep_end),
                             "takes": [(t.take, t.seed, t.cache_key, t.decision) for t in s.takes],
                             "scores": [(x.index, x.character, x.similarity, x.drifted) for t in s.takes for x in t.scores],
                             "frames": _frames_sha(s.path) if s.path else None}
            for s in out.shots}


@pytest.fixture(scope="module")
def local_result(base, tmp_path_factory):
    ws, spec = _copy(base, tmp_path_factory.mktemp("ray_local") / "ws")
    return _summary(render_series(ws, spec))


def test_ray_render_equals_local_render(ray_local, base, local_result, tmp_path):
    ws, spec = _copy(base, tmp_path / "ws")
    out = render_series(ws, spec, executor=RayExecutor("motion", {}, gpus_per_shot=0, workers=2))
    assert _summary(out) == local_result
    assert {s.plan.shot_id for s in out.shots} == {"face", "b", "c", "d"}
    workers = {s.worker for s in out.shots}
    assert os.getpid() not in workers and len(workers) == 2  # two actors, each reused across shots
    by = {s.plan.shot_id: s for s in out.shots}
    # the continued shot started only after its predecessor was finished and accepted
    assert by["d"].started >= by["c"].finished and by["c"].verdict.decision == "accept"
    assert by["d"].plan.conditioning[0] == "still:previous:c"
    reg = Registry.open(ws)  # verdicts written once, by the driver
    assert reg.db.execute("select count(*) from takes").fetchone()[0] == sum(len(s.takes) for s in out.shots)
    assert reg.db.execute("pragma integrity_check").fetchone()[0] == "ok"
    reg.close()
    assert {e.episode_id for e in out.episodes} == {"ep-1", "ep-2"}


def _shot_worker_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::ShotWorker.shot"):
                pids.append(int(d.name))
    return pids


def test_a_killed_worker_is_retried_and_nothing_is_lost(ray_local, base, local_result, tmp_path):
    ws, spec = _copy(base, tmp_path / "ws")
    takes = ws.renders / SERIES / "cache" / "takes"
    box: dict = {}

    def run():
        try:
            box["out"] = render_series(ws, spec, executor=RayExecutor("motion", {}, gpus_per_shot=0, workers=2))
        except BaseException as e:  # surfaced below
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    killed = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and t.is_alive() and killed is None:
        if takes.is_dir() and any(p.name.startswith(".") for p in takes.iterdir()):  # a take is being written
            pids = _shot_worker_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
        time.sleep(0.005)
    t.join(timeout=300)
    assert "error" not in box, box.get("error")
    assert killed is not None, "no worker was caught mid-take"
    out = box["out"]
    assert _summary(out) == local_result  # the series finished with the same frames and verdicts
    assert killed not in {s.worker for s in out.shots}
    reg = Registry.open(ws)
    assert reg.db.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert reg.db.execute("select count(distinct shot_id) from takes").fetchone()[0] == 4
    reg.close()
