"""Run every benchmark in scripts/ and print one Markdown report to stdout.

    .venv/bin/python scripts/bench_all.py [--only series,stitch] [--skip ray]

Each ``scripts/bench_<name>.py`` prints its own Markdown table (ratios against a baseline
measured in the same run); this runner executes them one after another (never in parallel:
they measure time), then prints a summary table and every benchmark's table beneath it.
"""

from __future__ import annotations

import argparse
import platform
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="Comma-separated names (e.g. series,stitch).")
    ap.add_argument("--skip", default="", help="Comma-separated names to leave out.")
    ap.add_argument("--timeout", type=float, default=1800, help="Seconds per benchmark.")
    args = ap.parse_args()
    only = {x for x in args.only.split(",") if x}
    skip = {x for x in args.skip.split(",") if x}
    scripts = sorted(p for p in HERE.glob("bench_*.py") if p.name != "bench_all.py")
    results = []
    for p in scripts:
        name = p.stem.removeprefix("bench_")
        if (only and name not in only) or name in skip:
            continue
        print(f"running {p.name} …", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            res = subprocess.run([sys.executable, str(p)], capture_output=True, text=True, timeout=args.timeout, cwd=HERE.parent)
            status = "ok" if res.returncode == 0 else f"failed (exit {res.returncode})"
            body = res.stdout.strip() if res.returncode == 0 else f"```\n{(res.stdout + res.stderr)[-2000:]}\n```"
        except subprocess.TimeoutExpired:
            status, body = f"timed out after {args.timeout:g} s", ""
        results.append((name, status, time.perf_counter() - t, body))
    print(f"# storyengine benchmarks\n\n{platform.node()} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} CPU(s) · Python {platform.python_version()}\n")
    print("| benchmark | status | wall s |")
    print("|---|---|---:|")
    for name, status, wall, _ in results:
        print(f"| {name} | {status} | {wall:.1f} |")
    for name, _, _, body in results:
        print(f"\n## {name}\n\n{body}")
    if any(s != "ok" for _, s, _, _ in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
