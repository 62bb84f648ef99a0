"""Load test: a 28-shot series (the 7-day demo with four shots a day) in one render process, with the
process's peak RSS read after each third of the shots. Memory must stay flat: frames are streamed.

    .venv/bin/python scripts/bench_load.py [--width 320] [--height 180] [--seconds 2]

The ratio printed is each third's peak against the first third's, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storyengine.demo import build_demo  # noqa: E402
from storyengine.workspace import Workspace  # noqa: E402

_CHILD = """
import json, resource, sys, time
from storyengine.render import render_series
from storyengine.settings import Settings
from storyengine.workspace import Workspace

class Thirds:
    def __init__(self, total):
        self.marks = [max(1, round(total * k / 3)) for k in (1, 2, 3)]
        self.seen = {}
        self.t0 = time.perf_counter()
    def start(self, key, description, total): ...
    def update(self, key, completed, description=None):
        if key == "series" and completed in self.marks and completed not in self.seen:
            self.seen[completed] = {"shots": completed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                    "wall": time.perf_counter() - self.t0}
    def done(self, key): ...

ws = Workspace.at(sys.argv[1])
rep = Thirds(int(sys.argv[3]))
out = render_series(ws, sys.argv[2], settings=Settings.load(ws.root), reporter=rep)
print(json.dumps({"thirds": [rep.seen[k] for k in sorted(rep.seen)], "shots": len(out.shots),
                  "episodes": len(out.episodes), "generated": out.generated}))
"""


def four_shots_a_day(spec: Path) -> int:
    """Give every episode of the demo spec two more shots (copies under new ids: new seeds, new takes)."""
    doc = yaml.safe_load(spec.read_text())
    n = 0
    for ep in doc["episodes"]:
        extra = [{**sh, "id": f"{sh['id']}-later"} for sh in ep["shots"] if sh.get("still") != "previous"]
        ep["shots"] = ep["shots"] + extra
        n += len(ep["shots"])
    spec.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        spec = build_demo(Workspace.at(ws).ensure(), days=7, width=args.width, height=args.height, seconds=args.seconds)
        shots = four_shots_a_day(spec)
        res = subprocess.run([sys.executable, "-c", _CHILD, str(ws), str(spec), str(shots)], capture_output=True,
                             text=True, cwd=ROOT)
        if res.returncode != 0:
            raise SystemExit(f"render failed:\n{res.stderr[-3000:]}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
    first = out["thirds"][0]["rss_mb"]
    print(f"Load test: {out['shots']} shots in {out['episodes']} episodes, motion back-end, {args.width}×{args.height}, "
          f"{args.seconds:g} s shots, one render process ({out['generated']} takes generated)\n")
    print("| after | shots | wall s | peak RSS MB | vs first third |")
    print("|---|---:|---:|---:|---:|")
    for i, t in enumerate(out["thirds"], 1):
        print(f"| third {i} | {t['shots']} | {t['wall']:.1f} | {t['rss_mb']:.0f} | ×{t['rss_mb'] / first:.2f} |")


if __name__ == "__main__":
    main()
