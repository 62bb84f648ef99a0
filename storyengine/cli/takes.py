"""`storyengine takes SHOT`: every take of a shot, its seed, mood, verdict, score and whether the episode uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import StoryEngineError
from .common import Col, JsonOpt, View, WorkspaceOpt, command, commands, emit_json, fail, info, open_workspace, show

app = commands()


def shot_takes(reg, shot: str, series: str | None = None, run_id: int | None = None) -> list[dict]:
    """Takes of ``shot`` in the latest run that rendered it (or ``run_id``), with their lowest mean similarity."""
    from ..errors import RegistryError

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
                    "path": t["path"], "reason": t["reason"]})
    return out


def takes_view(shot: str, rows: list[dict]) -> View:
    """The takes table; a narrow terminal drops mood and kept frames, then turns into one block per take."""
    v = View(f"takes of {shot} (run {rows[0]['run']})" if rows else f"takes of {shot}",
             [Col("used"), Col("take", "num"), Col("seed", "num"), Col("mood", drop=1), Col("verdict"), Col("score", "num"),
              Col("kept frames", "num", drop=1), Col("file", "path")])
    for r in rows:
        v.add("★" if r["used"] else "", r["take"], r["seed"], r["mood"] or "-", r["decision"],
              "-" if r["score"] is None else f"{r['score']:.3f}", f"{r['keep'][0]}–{r['keep'][1]}", r["path"])
    return v


@command(app, "takes")
def takes_cmd(shot: str = typer.Argument(..., metavar="SHOT", help="Shot id."),
              series: Optional[str] = typer.Option(None, "--series", "-s", metavar="SERIES",
                                                   help="Series name (when shot ids repeat across series)."),
              workspace: Optional[Path] = WorkspaceOpt,
              as_json: bool = JsonOpt) -> None:
    """List every take of a shot (seed, mood, verdict, score, file) and mark the one the episode uses.

    Example: storyengine takes day-2-evening --json
    """
    from ..registry import Registry

    try:
        rows = shot_takes(Registry.open(open_workspace(workspace)), shot, series)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json(rows)
        return
    show(takes_view(shot, rows))
    if not any(r["used"] for r in rows):
        info("no take of this shot is in the episode (every take was rejected)")
