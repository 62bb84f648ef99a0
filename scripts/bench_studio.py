"""What the studio adds to a render: one 4 s shot from a click (POST) vs the same render the CLI runs.

    .venv/bin/python scripts/bench_studio.py [--repeat 5] [--size 320x192] [--fps 24]

Each try renders in a fresh workspace (no cache), alternating:
- CLI: ``render_series`` with the CLI's own progress bars (``RichReporter`` drawing into a
  terminal-like buffer), the call ``storyengine render`` makes; the interpreter's start-up is left out
  and printed once separately as the real ``storyengine render`` subprocess time;
- studio: a uvicorn server in this process, an HTTP client POSTing the render form and reading the
  server-sent events over a real socket.
Times: to the first progress event (the first frame of progress a creator sees) and to the
playable take (the shot's ``shot`` event: its take is recorded and on disk), plus the whole run.
Prints medians and bests and the studio/CLI ratios (target: at most 1.10).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def workspace(root: Path, size: tuple[int, int], fps: int):
    from storyengine.workspace import Workspace

    ws = Workspace.at(root).ensure()
    from skimage import data

    still = np.asarray(Image.fromarray(data.astronaut()).resize(size))
    Image.fromarray(still).save(ws.episodes / "still.png")
    (ws.episodes / "b.yaml").write_text(
        f"series: b\nwidth: {size[0]}\nheight: {size[1]}\nfps: {fps}\nepisodes:\n"
        "  - id: e1\n    title_duration: 0\n    shots:\n"
        "      - id: s1\n        still: still.png\n        duration: 4\n        prompt: slow push in\n")
    return ws


class Clock:
    """The CLI's own progress bars (RichReporter, drawn to a terminal-like buffer), noting when the first
    progress and the shot arrive."""

    def __init__(self, t0: float, progress) -> None:
        from storyengine.cli.common import RichReporter

        self.t0, self.first, self.shot = t0, None, None
        self.bars = RichReporter(progress)

    def start(self, key, description, total):
        self.bars.start(key, description, total)
        if self.first is None:
            self.first = time.perf_counter() - self.t0

    def update(self, key, completed, description=None):
        self.bars.update(key, completed, description)

    def done(self, key):
        self.bars.done(key)

    def event(self, kind, **data):
        if kind == "shot" and self.shot is None:
            self.shot = time.perf_counter() - self.t0


def cli_once(root: Path, size, fps) -> tuple[float, float, float]:
    from storyengine.render import render_series
    from storyengine.settings import Settings

    import io

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    ws = workspace(root, size, fps)
    settings = Settings.load(ws.root, max_takes=1)
    # the CLI's bars (storyengine.cli.common.progress), drawn into a buffer that behaves like a terminal
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    p = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                 TimeElapsedColumn(), console=console, transient=True)
    t0 = time.perf_counter()
    with p:
        clock = Clock(t0, p)
        render_series(ws, ws.episodes / "b.yaml", settings=settings, reporter=clock)
    return clock.first, clock.shot, time.perf_counter() - t0


def studio_once(root: Path, size, fps) -> tuple[float, float, float]:
    import httpx
    import uvicorn

    from storyengine.settings import Settings
    from storyengine.studio import create_app

    ws = workspace(root, size, fps)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ws.root, port=port, settings=Settings.load(ws.root, max_takes=1))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    while not srv.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=300) as c:
            csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/series/b.yaml").text).group(1)
            first = shot = None
            t0 = time.perf_counter()  # the click
            r = c.post("/series/b.yaml/render", data={"csrf": csrf, "shot": "s1"},
                       headers={"Origin": base, "Accept": "application/json"})
            r.raise_for_status()
            with c.stream("GET", r.json()["events"]) as ev:
                kind = None
                for line in ev.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        now = time.perf_counter() - t0
                        if kind == "progress" and first is None:
                            first = now
                        elif kind == "shot" and shot is None:
                            shot = now
                        elif kind == "end":
                            assert json.loads(line[6:])["state"] == "done", line
                            return first, shot, now
    finally:
        srv.should_exit = True
        th.join(10)
    raise RuntimeError("the event stream ended without `end`")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", default="320x192")
    ap.add_argument("--fps", type=int, default=24)
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    os.environ.setdefault("STORYENGINE_C2PA_DIR", tempfile.mkdtemp(prefix="bench-c2pa-"))
    with tempfile.TemporaryDirectory(prefix="bench-studio-") as d:
        cli_once(Path(d) / "warm", size, a.fps)  # imports, encoders and the signing key once, outside the timing
        rows: dict[str, list[tuple[float, float, float]]] = {"cli": [], "studio": []}
        for i in range(a.repeat):
            for name, fn in (("cli", cli_once), ("studio", studio_once)) if i % 2 == 0 else (("studio", studio_once), ("cli", cli_once)):
                r = fn(Path(d) / f"{name}{i}", size, a.fps)
                rows[name].append(r)
                print(f"{name:6s} try {i + 1}: first progress {r[0]:.3f} s · playable take {r[1]:.3f} s · whole run {r[2]:.3f} s",
                      file=sys.stderr, flush=True)
        ws = workspace(Path(d) / "sub", size, a.fps)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from storyengine.cli import app; app()", "render", "-w", str(ws.root),
                        str(ws.episodes / "b.yaml"), "--max-takes", "1"], check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        sub = time.perf_counter() - t0
    med = {k: [statistics.median(r[j] for r in v) for j in range(3)] for k, v in rows.items()}
    best = {k: [min(r[j] for r in v) for j in range(3)] for k, v in rows.items()}
    print(f"One {a.fps * 4}-frame {size[0]}x{size[1]} shot (motion back-end), fresh workspace each try, {a.repeat} tries each "
          "(alternating); median and best, since other work on the machine makes single tries noisy.\n")
    print("| from the click to | CLI median s | studio median s | ratio (target <= 1.10) | CLI best s | studio best s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for j, what in enumerate(("first progress event", "playable take", "whole run (stitched, report)")):
        c, s, cb, sb = med["cli"][j], med["studio"][j], best["cli"][j], best["studio"][j]
        print(f"| {what} | {c:.3f} | {s:.3f} | {s / c:.2f}x | {cb:.3f} | {sb:.3f} | {sb / cb:.2f}x |")
    print(f"\n`storyengine render` as a subprocess, interpreter start-up and imports included: {sub:.2f} s.")


if __name__ == "__main__":
    main()
