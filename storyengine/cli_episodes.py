"""`storyengine takes SHOT`: every take of a shot, its seed, mood, verdict, score and whether the episode uses it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .cli import WorkspaceOpt, _fail, _ws, console
from .errors import StoryEngineError


def shot_takes(reg, shot: str, series: str | None = None, run_id: int | None = None) -> list[dict]:
    """Takes of ``shot`` in the latest run that rendered it (or ``run_id``), with their lowest mean similarity."""
    from .errors import RegistryError

    where, args = "shot_id = ?", [shot]
    if series:
        where += " and series = ?"
        args.append(series)
    if run_id is None:
        row = next(iter(reg.db.query(f"select max(run_id) as r from takes where {where}", args)), None)
        run_id = row["r"] if row else None
    if run_id is None:
        known = [r["shot_id"] for r in reg.db.query("select distinct shot_id from takes order by shot_id")]
        raise RegistryError(f"no takes of shot {shot!r} are recorded (shots rendered here: {', '.join(known) or 'none'})")
    out = []
    for t in reg.db.query(f"select * from takes where {where} and run_id = ? order by take", [*args, run_id]):
        means = [c["mean"] for c in reg.db.query("select mean from character_scores where take_id = ?", [t["id"]])
                 if c["mean"] is not None]
        out.append({"run": t["run_id"], "take": t["take"], "seed": t["seed"], "mood": t.get("mood") or "",
                    "decision": t["decision"], "score": round(min(means), 4) if means else None,
                    "used": bool(t.get("used")), "frames": t["num_frames"], "keep": [t["keep_start"], t["keep_end"]],
                    "path": t["path"], "reason": t["reason"],
                    "human": json.loads(t["human"]) if t.get("human") else None})  # the creator's decision (issue 15)
    return out


# registered by cli_takes as `storyengine takes [list] SHOT` (the `takes` group, issue 15)
def takes_cmd(shot: str = typer.Argument(..., help="Shot id."),
              series: Optional[str] = typer.Option(None, "--series", "-s", help="Series name (when shot ids repeat across series)."),
              workspace: Path = WorkspaceOpt,
              as_json: bool = typer.Option(False, "--json", help="Print the takes as JSON.")) -> None:
    """List every take of a shot (seed, mood, verdict, score, file) and mark the one the episode uses."""
    from .registry import Registry

    try:
        rows = shot_takes(Registry.open(_ws(workspace)), shot, series)
    except StoryEngineError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    t = Table("", "take", "seed", "mood", "verdict", "score", "kept frames", "creator", "file", title=f"takes of {shot} (run {rows[0]['run']})")
    for r in rows:
        h = r.get("human")
        t.add_row("★" if r["used"] else "", str(r["take"]), str(r["seed"]), r["mood"] or "-", r["decision"],
                  "-" if r["score"] is None else f"{r['score']:.3f}", f"{r['keep'][0]}–{r['keep'][1]}",
                  f"{h['action']}{': ' + h['reason'] if h.get('reason') else ''}" if h else "-", r["path"])
    console.print(t)
    if not any(r["used"] for r in rows):
        console.print("no take of this shot is in the episode (every take was rejected)")
