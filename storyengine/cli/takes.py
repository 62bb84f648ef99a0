"""`storyengine takes`: list a shot's takes (seed, mood, verdict, score, whether the episode uses it), and record
the creator's decisions on them (use / accept / reject).

``takes`` is a group whose default subcommand is ``list``: ``storyengine takes SHOT`` lists (the first
argument is not a subcommand name, so ``list`` is put in front of it). Decisions are recorded in the
registry (:mod:`storyengine.decisions`) and honoured by the next render without regenerating.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import StoryEngineError
from .common import Col, Group, JsonOpt, View, WorkspaceOpt, command, emit_json, fail, info, open_workspace, say, show


class _ListByDefault(Group):
    """A group that runs ``list`` when its first argument is not one of its commands (``takes SHOT``)."""

    def parse_args(self, ctx, args):  # noqa: ANN001 (click's signature)
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_ListByDefault, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="A shot's takes, and your decisions on them: `takes SHOT` lists; use / accept / reject decide.\n\n"
                       "Example: storyengine takes day-2-evening")


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
                    "path": t["path"], "reason": t["reason"],
                    "human": json.loads(t["human"]) if t.get("human") else None})  # the creator's decision (issue 15)
    return out


def _creator(h: dict | None) -> str:
    """The creator's decision on a take, as a cell: ``use: reason`` or ``-``."""
    return f"{h['action']}{': ' + h['reason'] if h.get('reason') else ''}" if h else "-"


def takes_view(shot: str, rows: list[dict]) -> View:
    """The takes table; a narrow terminal drops mood and kept frames, then turns into one block per take."""
    v = View(f"takes of {shot} (run {rows[0]['run']})" if rows else f"takes of {shot}",
             [Col("used"), Col("take", "num"), Col("seed", "num"), Col("mood", drop=1), Col("verdict"), Col("score", "num"),
              Col("kept frames", "num", drop=1), Col("creator", drop=2), Col("file", "path")])
    for r in rows:
        v.add("★" if r["used"] else "", r["take"], r["seed"], r["mood"] or "-", r["decision"],
              "-" if r["score"] is None else f"{r['score']:.3f}", f"{r['keep'][0]}–{r['keep'][1]}", _creator(r.get("human")),
              r["path"])
    return v


@command(app, "list")
def takes_cmd(shot: str = typer.Argument(..., metavar="SHOT", help="Shot id."),
              series: Optional[str] = typer.Option(None, "--series", "-s", metavar="SERIES",
                                                   help="Series name (when shot ids repeat across series)."),
              workspace: Optional[Path] = WorkspaceOpt,
              as_json: bool = JsonOpt) -> None:
    """List every take of a shot (seed, mood, verdict, score, file) and mark the one the episode uses.

    Example: storyengine takes list day-2-evening --json
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


def _decide(action: str, shot: str, take: int, reason: str, series: Optional[str], workspace: Optional[Path],
            as_json: bool) -> None:
    from .. import decisions
    from ..registry import Registry

    try:
        reg = Registry.open(open_workspace(workspace))
        row = decisions.record(reg, shot, take, action, reason, series)
        reg.close()
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json(row)
        return
    what = {"use": "the episode will use", "accept": "accepted", "reject": "rejected"}[action]
    say(f"{row['series']} / {shot}: {what} take {take}{' — ' + reason if reason else ''} "
        f"({row['created_at']}); the next render applies it without regenerating")


ShotArg = typer.Argument(..., metavar="SHOT", help="Shot id.")
TakeArg = typer.Argument(..., min=1, metavar="N", help="Take number (1 = first).")
ReasonOpt = typer.Option("", "--reason", "-r", metavar="TEXT",
                         help="Why (recorded with the time; shown in takes, the report and the manifest).")
SeriesOpt = typer.Option(None, "--series", "-s", metavar="SERIES", help="Series name (when shot ids repeat across series).")


@command(app, "use")
def use_cmd(shot: str = ShotArg, take: int = TakeArg, reason: str = ReasonOpt, series: Optional[str] = SeriesOpt,
            workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """Use take N of a shot in its episode, whatever the checker says (a human decision).

    Example: storyengine takes use day-1-morning 2 --reason "the warmer light"
    """
    _decide("use", shot, take, reason, series, workspace, as_json)


@command(app, "accept")
def accept_cmd(shot: str = ShotArg, take: int = TakeArg, reason: str = ReasonOpt, series: Optional[str] = SeriesOpt,
               workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """Accept take N (its whole length) even if the checker rejected it.

    Example: storyengine takes accept day-3-evening 1 --reason "her glasses fooled the checker"
    """
    _decide("accept", shot, take, reason, series, workspace, as_json)


@command(app, "reject")
def reject_cmd(shot: str = ShotArg, take: int = TakeArg, reason: str = ReasonOpt, series: Optional[str] = SeriesOpt,
               workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """Reject take N even if the checker accepted it; the shot moves on to its next take.

    Example: storyengine takes reject day-1-morning 1 --reason "the hand looks wrong"
    """
    _decide("reject", shot, take, reason, series, workspace, as_json)
