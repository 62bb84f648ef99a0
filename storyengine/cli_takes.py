"""`storyengine takes`: list a shot's takes, and the creator's decisions on them (use / accept / reject).

``takes`` is a group whose default subcommand is ``list``: ``storyengine takes SHOT`` still lists
(the first argument is not a subcommand name, so ``list`` is put in front of it). The decisions
are recorded in the registry (:mod:`storyengine.decisions`) and honoured by the next render
without regenerating.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from typer.core import TyperGroup

from .cli import WorkspaceOpt, _fail, _ws, app, console
from .cli_episodes import takes_cmd
from .errors import StoryEngineError


class _ListByDefault(TyperGroup):
    """A group that runs ``list`` when its first argument is not one of its commands (``takes SHOT``)."""

    def parse_args(self, ctx, args):  # noqa: ANN001 (click's signature)
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


takes_app = typer.Typer(cls=_ListByDefault, no_args_is_help=True,
                        help="A shot's takes, and your decisions on them: `takes SHOT` lists; use / accept / reject decide.")
app.add_typer(takes_app, name="takes")
takes_app.command("list")(takes_cmd)


def _decide(action: str, shot: str, take: int, reason: str, series: Optional[str], workspace: Path, as_json: bool) -> None:
    from . import decisions
    from .registry import Registry

    try:
        reg = Registry.open(_ws(workspace))
        row = decisions.record(reg, shot, take, action, reason, series)
        reg.close()
    except StoryEngineError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(row, indent=2) + "\n")
        return
    what = {"use": "the episode will use", "accept": "accepted", "reject": "rejected"}[action]
    console.print(f"{row['series']} / {shot}: {what} take {take}{' — ' + escape(reason) if reason else ''} "
                  f"({row['created_at']}); the next render applies it without regenerating", highlight=False)


ReasonOpt = typer.Option("", "--reason", "-r", help="Why (recorded with the time; shown in takes, the report and the manifest).")
SeriesOpt = typer.Option(None, "--series", "-s", help="Series name (when shot ids repeat across series).")
JsonOpt = typer.Option(False, "--json", help="Print the recorded decision as JSON.")


@takes_app.command("use")
def use_cmd(shot: str = typer.Argument(..., help="Shot id."), take: int = typer.Argument(..., min=1, help="Take number."),
            reason: str = ReasonOpt, series: Optional[str] = SeriesOpt, workspace: Path = WorkspaceOpt,
            as_json: bool = JsonOpt) -> None:
    """Use take N of a shot in its episode, whatever the checker says (a human decision)."""
    _decide("use", shot, take, reason, series, workspace, as_json)


@takes_app.command("accept")
def accept_cmd(shot: str = typer.Argument(..., help="Shot id."), take: int = typer.Argument(..., min=1, help="Take number."),
               reason: str = ReasonOpt, series: Optional[str] = SeriesOpt, workspace: Path = WorkspaceOpt,
               as_json: bool = JsonOpt) -> None:
    """Accept take N (its whole length) even if the checker rejected it."""
    _decide("accept", shot, take, reason, series, workspace, as_json)


@takes_app.command("reject")
def reject_cmd(shot: str = typer.Argument(..., help="Shot id."), take: int = typer.Argument(..., min=1, help="Take number."),
               reason: str = ReasonOpt, series: Optional[str] = SeriesOpt, workspace: Path = WorkspaceOpt,
               as_json: bool = JsonOpt) -> None:
    """Reject take N even if the checker accepted it; the shot moves on to its next take."""
    _decide("reject", shot, take, reason, series, workspace, as_json)
