"""Local executor vs Ray on the same small series (motion back-end), and Ray's per-task overhead.

    .venv/bin/python scripts/bench_ray.py [--episodes 4] [--workers 2]

Both renders start from copies of one prepared workspace (characters registered, stills drawn),
with an empty take cache. Ray runs on a private local instance with ``--workers`` CPU actors.
Per-task overhead: an empty actor method round trip, and a shot's wall time on the driver
(submit → result) minus its production time on the worker.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storyengine.demo import build_demo  # noqa: E402
from storyengine.render import render_series  # noqa: E402
from storyengine.settings import Settings  # noqa: E402
from storyengine.workspace import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    import ray

    from storyengine.executors import RayExecutor, ShotWorker

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        spec = build_demo(Workspace.at(base).ensure(), days=args.episodes, width=320, height=180, seconds=args.seconds)
        rel = spec.relative_to(base)
        runs = {}
        for name in ("local", "ray"):
            root = Path(tmp) / name
            shutil.copytree(base, root)
            ws = Workspace.at(root)
            ex = None
            if name == "ray":
                t = time.perf_counter()
                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
                init_s = time.perf_counter() - t
                ex = RayExecutor("motion", {}, gpus_per_shot=0, workers=args.workers)
            t = time.perf_counter()
            out = render_series(ws, root / rel, settings=Settings.load(ws.root), executor=ex)
            runs[name] = (time.perf_counter() - t, out)
        # round trip of an empty actor call
        actor = ray.remote(ShotWorker).options(num_cpus=1).remote("motion", {})
        ray.get(actor.pid.remote())
        t = time.perf_counter()
        for _ in range(50):
            ray.get(actor.pid.remote())
        rtt_ms = (time.perf_counter() - t) / 50 * 1000
        ray.shutdown()
    (lw, lo), (rw, ro) = runs["local"], runs["ray"]
    shots = len(ro.shots)
    busy = sum(s.finished - s.started for s in ro.shots)
    print(f"{args.episodes} episodes × 2 shots, 320×180, {args.seconds:g} s shots, motion back-end; "
          f"Ray: local instance, {args.workers} CPU actors (init {init_s:.1f} s, not included)\n")
    print("| executor | wall s | shots | s / shot | ratio |")
    print("|---|---:|---:|---:|---|")
    print(f"| local | {lw:.1f} | {len(lo.shots)} | {lw / len(lo.shots):.2f} | baseline |")
    print(f"| ray ({args.workers} workers) | {rw:.1f} | {shots} | {rw / shots:.2f} | ×{rw / lw:.2f} of local |")
    print(f"\nper-task overhead: empty actor call {rtt_ms:.1f} ms round trip; worker busy {busy:.1f} s over {shots} shots "
          f"({busy / shots:.2f} s each) against {rw * args.workers / shots:.2f} s of actor time per shot")


if __name__ == "__main__":
    main()
