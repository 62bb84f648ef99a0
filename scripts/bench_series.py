"""Series rendering at scale: 1 vs 7 episodes (wall time, peak RSS), and an unchanged re-run.

    .venv/bin/python scripts/bench_series.py [--width 320] [--height 180] [--seconds 2]

Each render runs in its own process (``storyengine render``, every shot in that process:
``executor = "local"``; bench_parallel.py measures worker processes) on a fresh copy of the demo
workspace, so peak RSS is that process's own high-water mark (ffmpeg children are not included:
a forked child's high-water mark starts at its parent's size, so it says nothing about ffmpeg;
bench_stitch.py samples ffmpeg's memory directly). Memory must stay flat from 1 to 7 episodes: frames are streamed, never held.
The re-run of the unchanged 7-episode series measures the content-addressed cache.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storyengine.demo import build_demo  # noqa: E402
from storyengine.workspace import Workspace  # noqa: E402

_CHILD = """
import json, resource, sys, time
from storyengine.render import render_series
from storyengine.settings import Settings
from storyengine.workspace import Workspace
ws = Workspace.at(sys.argv[1])
eps = json.loads(sys.argv[3]) or None
t = time.perf_counter()
out = render_series(ws, sys.argv[2], episodes=eps, settings=Settings.load(ws.root, executor="local"))
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "episodes": len(out.episodes), "shots": len(out.shots)}))
"""


def render(ws: Path, spec: Path, episodes: list[str] | None) -> dict:
    res = subprocess.run([sys.executable, "-c", _CHILD, str(ws), str(spec), json.dumps(episodes or [])],
                         capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"render failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        spec = build_demo(Workspace.at(base).ensure(), days=7, width=args.width, height=args.height, seconds=args.seconds)
        rel = spec.relative_to(base)
        one, seven = Path(tmp) / "one", Path(tmp) / "seven"
        shutil.copytree(base, one)
        shutil.copytree(base, seven)
        r1 = render(one, one / rel, ["day-1"])
        r7 = render(seven, seven / rel, None)
        again = render(seven, seven / rel, None)
    print(f"Series render, motion back-end, {args.width}×{args.height}, {args.seconds:g} s shots, 2 shots a day; "
          f"peak RSS of the render process\n")
    print("| run | episodes | shots | wall s | peak RSS MB | ratio |")
    print("|---|---:|---:|---:|---:|---|")
    print(f"| 1 episode | {r1['episodes']} | {r1['shots']} | {r1['wall']:.1f} | {r1['rss_mb']:.0f} | baseline |")
    print(f"| 7 episodes | {r7['episodes']} | {r7['shots']} | {r7['wall']:.1f} | {r7['rss_mb']:.0f} | "
          f"wall ×{r7['wall'] / r1['wall']:.2f}, RSS ×{r7['rss_mb'] / r1['rss_mb']:.2f} |")
    print(f"| 7 episodes, unchanged re-run | {again['episodes']} | {again['shots']} | {again['wall']:.1f} | {again['rss_mb']:.0f} | "
          f"{again['wall'] / r7['wall']:.1%} of the first run |")


if __name__ == "__main__":
    main()
