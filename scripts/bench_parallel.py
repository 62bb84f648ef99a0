"""Shots side by side: `storyengine demo` with every shot in one process (``--workers 1``) against worker
processes (the default, ``executor = "auto"``), for 2 and 7 days, in the same session.

    .venv/bin/python scripts/bench_parallel.py [--days 2 7] [--width 640] [--height 360] [--seconds 4]

Each run is a fresh `python -m storyengine demo` process on an empty workspace: stills composed,
characters registered, every take generated, checked and stitched. Wall time and peak RSS of the
whole process tree (the CLI, its worker processes and their ffmpeg children, summed at each 0.2 s
sample) are printed, with the parallel run as a ratio of the serial one. The outputs are compared
too: the same take cache keys, verdicts and episode frame counts. On a shared machine absolute
times are noisy; the ratio is what this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def run_demo(ws: Path, days: int, workers: int | None, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "storyengine", "demo", "--json", "-w", str(ws), "--days", str(days),
           "--width", str(args.width), "--height", str(args.height), "--seconds", str(args.seconds)]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load0 = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            break
        peak = max(peak, total)
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # every descendant, each waited for by its parent
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"demo failed ({proc.returncode}):\n{err[-3000:]}")
    doc = json.loads(out)
    return {"wall": wall, "rss_mb": peak / 2**20, "cpu": cpu_s, "doc": doc,
            "load": (load0 + os.getloadavg()[0]) / 2}


def outputs(ws: Path) -> dict:
    """What must not depend on the executor: per shot the takes' cache keys and verdicts, per episode its frames."""
    import sqlite3

    db = sqlite3.connect(next(ws.rglob("registry.db")))
    takes = sorted(db.execute("select shot_id, take, cache_key, decision, keep_start, keep_end, used from takes"))
    eps = sorted(db.execute("select episode_id, frames, key from episodes"))
    db.close()
    return {"takes": takes, "episodes": eps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, nargs="+", default=[2, 7])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for days in args.days:
            serial = run_demo(Path(tmp) / f"serial-{days}", days, 1, args)
            par = run_demo(Path(tmp) / f"parallel-{days}", days, None, args)
            same = outputs(Path(tmp) / f"serial-{days}") == outputs(Path(tmp) / f"parallel-{days}")
            rows.append((days, serial, par, same))
            print(f"days {days}: serial {serial['wall']:.1f} s (CPU {serial['cpu']:.0f} s, {serial['rss_mb']:.0f} MB, load "
                  f"{serial['load']:.1f}), parallel {par['wall']:.1f} s (CPU {par['cpu']:.0f} s, {par['rss_mb']:.0f} MB, "
                  f"load {par['load']:.1f}), same outputs: {same}", file=sys.stderr, flush=True)
    print(f"`storyengine demo`, {args.width}×{args.height}, {args.seconds:g} s shots, {psutil.cpu_count()} CPUs; "
          f"peak RSS of the whole process tree\n")
    print("| days | executor | wall s | CPU s | load avg | peak RSS MB | wall ratio | same outputs |")
    print("|---:|---|---:|---:|---:|---:|---|---|")
    for days, s, p, same in rows:
        print(f"| {days} | local (--workers 1) | {s['wall']:.1f} | {s['cpu']:.0f} | {s['load']:.1f} | {s['rss_mb']:.0f} | "
              f"baseline | |")
        print(f"| {days} | process (default) | {p['wall']:.1f} | {p['cpu']:.0f} | {p['load']:.1f} | {p['rss_mb']:.0f} | "
              f"×{p['wall'] / s['wall']:.2f} ({s['wall'] / p['wall']:.2f}× faster) | {'yes' if same else 'NO'} |")
    print("\nCPU s: user + system of every process in the tree (the workers' own start-up is the difference). "
          "Load avg: the 1-minute load average during the run; on a machine shared with other work, absolute "
          "times move with that load, so compare the ratio.")


if __name__ == "__main__":
    main()
