"""Fault injection over the command line (issue 14): every fault a creator will meet, on a fresh copy of one workspace.

    .venv/bin/python scripts/bench_faults.py [--keep DIR]

Builds a workspace once (one registered person, a tiny 64x36 series rendered once), then per case:
copies it, injects the fault (a damaged registry, a link outside, a bad spec or setting, a damaged
cache entry, …), runs the command through the real CLI (typer's CliRunner, in-process) and counts

- tracebacks: an exception that escaped the CLI, or "Traceback" in its output (target 0);
- bytes lost: size of every registered photo, earlier episode and file outside the workspace that
  is gone or changed afterwards, plus, for a refused command (exit 1), every byte of the registry
  tables and of the files under characters/ and renders/ that changed (target 0);
- wrong exits: a refusal that is not exit 1 with one `error:` message, or a recovery that does not exit 0.

Prints one line per case and the totals: cases tried, tracebacks seen, bytes lost.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storyengine.cli import app  # noqa: E402
from storyengine.media import count_frames  # noqa: E402

SPEC = ("series: s\nwidth: 64\nheight: 36\nfps: 8\nepisodes:\n  - id: day-1\n    title_duration: 0\n    shots:\n"
        "      - id: a\n        still: still.png\n        characters: [mara]\n        duration: 0.5\n")


def files(root: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and not p.name.startswith(("registry.db", ".registry.lock")):
            out[str(p.relative_to(root))] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def tables(ws: Path) -> dict[str, list]:
    db = ws / "characters" / "registry.db"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return {t: conn.execute(f"select * from [{t}]").fetchall()
                    for (t,) in conn.execute("select name from sqlite_master where type='table' order by name")}
        finally:
            conn.close()
    except sqlite3.Error:
        return {"(unreadable)": [hashlib.sha256(db.read_bytes()).hexdigest()]}


def precious(ws: Path, outside: Path, episodes: bool = True) -> dict[str, tuple[int, str]]:
    """Files whose loss is data loss: registered photos, episodes (unless a recovering render may remake
    them), anything outside the workspace."""
    out = {k: v for k, v in files(ws).items()
           if "/photos/" in k or episodes and k.endswith("day-1.mp4") and "/takes/" not in k}
    out.update({f"OUTSIDE/{k}": v for k, v in files(outside).items()})
    return out


def lost(before: dict, after: dict) -> int:
    return sum(size for k, (size, sha) in before.items() if after.get(k, (None, None))[1] != sha)


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- the cases: (name, inject, command, expect)
def link_photos_out(ws: Path, outside: Path) -> None:
    inner = ws / "characters" / "mara" / "photos"
    for f in inner.iterdir():
        shutil.copy2(f, outside / f.name)
    shutil.rmtree(inner)
    inner.symlink_to(outside, target_is_directory=True)


def cases(src: Path) -> list[tuple[str, Callable[[Path, Path], None], Callable[[Path], tuple], str]]:
    spec = lambda ws: ws / "episodes" / "s.yaml"  # noqa: E731
    def toml(text: str):
        return lambda ws, out: (ws / "storyengine.toml").write_text(text)

    def spec_with(old: str, new: str):
        return lambda ws, out: spec(ws).write_text(SPEC.replace(old, new))

    def cache_mp4(ws: Path) -> Path:
        return next((ws / "renders" / "s" / "cache" / "takes").glob("*.mp4"))

    def flip(ws: Path, out: Path) -> None:
        with open(cache_mp4(ws), "r+b") as f:
            f.write(b"\0" * 64)

    c = [
        ("registry is not a database", lambda ws, out: (ws / "characters" / "registry.db").write_bytes(b"notes\n" * 99),
         lambda ws: ("character", "list"), "refused"),
        ("registry truncated", lambda ws, out: (ws / "characters" / "registry.db").write_bytes(
            (ws / "characters" / "registry.db").read_bytes()[:8192]), lambda ws: ("character", "show", "mara"), "refused"),
        ("registry from a newer storyengine", lambda ws, out: sqlite3.connect(ws / "characters" / "registry.db").execute(
            "insert into _migrations values ('m999', 'x')").connection.commit(), lambda ws: ("character", "list"), "refused"),
        ("-w names a file", lambda ws, out: None, lambda ws: ("character", "list", "-w", ws / "episodes" / "still.png"),
         "refused"),
        ("renders/.lock is a folder", lambda ws, out: ((ws / "renders" / ".lock").unlink(missing_ok=True),
                                                        (ws / "renders" / ".lock").mkdir()),
         lambda ws: ("render", spec(ws)), "refused"),
        ("spec not UTF-8", lambda ws, out: spec(ws).write_bytes(SPEC.replace("series: s", "series: s\n# caf\xe9")
                                                                .encode("latin-1")), lambda ws: ("plan", spec(ws)),
         "refused"),
        ("storyengine = 5", toml("storyengine = 5\n"), lambda ws: ("character", "list"), "refused"),
        ("seed 2^63", spec_with("duration: 0.5", "duration: 0.5\n        seed: 9223372036854775808"),
         lambda ws: ("render", spec(ws)), "refused"),
        ("1x1 still", lambda ws, out: Image.new("RGB", (1, 1)).save(ws / "episodes" / "still.png"),
         lambda ws: ("render", spec(ws)), "refused"),
        ("bound: true in a shot", spec_with("duration: 0.5", "duration: 0.5\n        bound: true"),
         lambda ws: ("render", spec(ws)), "refused"),
        ("duplicate YAML key", spec_with("duration: 0.5", "duration: 0.5\n        duration: 1"),
         lambda ws: ("render", spec(ws)), "refused"),
        ("second spec, same series", lambda ws, out: ((ws / "episodes" / "t.yaml").write_text(SPEC), sqlite3.connect(
            ws / "characters" / "registry.db").execute("update runs set spec_path = ?", [str(spec(ws))]).connection.commit()),
         lambda ws: ("render", ws / "episodes" / "t.yaml"), "refused"),
        ("photos/ links outside: remove --photo", lambda ws, out: link_photos_out(ws, out),
         lambda ws: ("character", "remove", "mara", "--photo", 1, "--yes"), "refused"),
        ("photos/ links outside: add-photos", lambda ws, out: link_photos_out(ws, out),
         lambda ws: ("character", "add-photos", "mara", src / "more.png", "--force"), "refused"),
        ("photo deleted by hand", lambda ws, out: next((ws / "characters" / "mara" / "photos").iterdir()).unlink(),
         lambda ws: ("render", spec(ws)), "refused"),
        ("read command outside a workspace", lambda ws, out: (ws.parent / "empty").mkdir(),
         lambda ws: ("report", "-w", ws.parent / "empty"), "refused"),
        ("damaged take bytes", flip, lambda ws: ("render", spec(ws)), "recovers"),
        ("take .json of the wrong shape", lambda ws, out: cache_mp4(ws).with_suffix(".json").write_text("[1]"),
         lambda ws: ("render", spec(ws)), "recovers"),
        ("truncated episode record", lambda ws, out: (ws / "renders" / "s" / "cache" / "episodes" / "day-1.json")
         .write_text("{\"ke"), lambda ws: ("render", spec(ws)), "recovers"),
        ("stale temp files of a kill -9", lambda ws, out: (ws / "renders" / "s" / ".day-1.mp4.0a1b2c3d.mp4")
         .write_bytes(b"half"), lambda ws: ("render", spec(ws)), "recovers"),
    ]
    for line in ("check_mode = 'fast'", "preset = 'quick'", "max_takes = 0", "check_stride = 0", "detect_stride = 0",
                 "crf = 23.5", "bound = 1.5", "bound = true"):
        c.append((f"setting {line}", toml(f"[storyengine]\n{line}\n"), lambda ws: ("render", spec(ws)), "refused"))
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="build the workspaces here and keep them")
    a = ap.parse_args()
    from skimage import data

    base = Path(a.keep or tempfile.mkdtemp(prefix="bench-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(base / "home")  # the development signing credential is made there
    src = base / "src"
    src.mkdir(exist_ok=True)
    astro = data.astronaut()[:300, 40:440]
    Image.fromarray(astro).save(src / "p1.png")
    Image.fromarray(np.ascontiguousarray(astro[:, ::-1])).save(src / "more.png")
    tpl = base / "template"
    shutil.rmtree(tpl, ignore_errors=True)
    r = cli("character", "add", "mara", src / "p1.png", "-w", tpl)
    assert r.exit_code == 0, r.output
    Image.fromarray(astro).save(tpl / "episodes" / "still.png")
    (tpl / "episodes" / "s.yaml").write_text(SPEC)
    r = cli("render", tpl / "episodes" / "s.yaml", "--max-takes", 1, "-w", tpl)
    assert r.exit_code == 0, r.output
    tried = tracebacks = bytes_lost = wrong = 0
    for i, (name, inject, command, expect) in enumerate(cases(src)):
        ws, outside = base / f"case-{i:02d}" / "ws", base / f"case-{i:02d}" / "outside"
        shutil.rmtree(ws.parent, ignore_errors=True)
        shutil.copytree(tpl, ws, symlinks=True)
        outside.mkdir()
        (outside / "keep.txt").write_text("someone else's file\n")
        inject(ws, outside)
        keep = precious(ws, outside, episodes=expect == "refused")
        snap = (tables(ws), {k: v for k, v in files(ws).items() if k.startswith(("characters/", "renders/"))})
        args = command(ws)
        res = cli(*args, *(() if "-w" in args else ("-w", ws)))
        tried += 1
        tb = (res.exception is not None and not isinstance(res.exception, SystemExit)) or "Traceback" in res.output
        tracebacks += tb
        n = lost(keep, precious(ws, outside, episodes=expect == "refused"))
        if expect == "refused":
            now = (tables(ws), {k: v for k, v in files(ws).items() if k.startswith(("characters/", "renders/"))})
            if now != snap:
                n += lost(snap[1], now[1]) or 1  # a changed registry row counts as at least one byte
            ok = res.exit_code == 1 and res.stderr.startswith("error: ")
        else:  # the render went on: its episode is there and decodes to every frame
            ep = ws / "renders" / "s" / "day-1.mp4"
            ok = res.exit_code == 0 and ep.is_file() and count_frames(ep) == count_frames(tpl / "renders" / "s" / "day-1.mp4")
        wrong += not ok
        bytes_lost += n
        msg = (res.stderr.strip().splitlines() or [""])[0][:110]
        print(f"{'ok ' if ok and not tb and not n else 'BAD'} {name:40s} exit {res.exit_code}  lost {n:6d} B  {msg}")
    print(f"\nfault cases tried: {tried}\ntracebacks seen: {tracebacks} (target 0)\nbytes lost: {bytes_lost} (target 0)"
          f"\nwrong exits: {wrong}")
    if not a.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
