"""The root `storyengine` command: options that apply to every subcommand, and the subcommands put together.

Command modules never import this one (they register on their own Typer objects), so there is no
import circle: ``app`` -> ``characters``, ``series``, … -> ``common``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import backends, characters, demo, init, lora, report, series, studio, takes, verify
from .common import Group, err, reset

app = typer.Typer(name="storyengine", cls=Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"storyengine {__version__}")
        raise typer.Exit()


@app.callback()
def root(workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", envvar="STORYENGINE_WORKSPACE", metavar="DIR",
                                                  show_default=False,
                                                  help="Workspace folder for every command (a command's own -w wins)."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Only results and errors: no progress, no summary lines."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Progress as lines (kept in the scrollback), one per shot stage too, instead of bars."),
         version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Recurring characters from a few photos, extended into consistent clips and episodes.

    Example: storyengine demo && storyengine report subway-diary -w demo
    """
    if quiet and verbose:
        err().print("[bold red]error:[/] --quiet and --verbose exclude each other", highlight=False)
        raise typer.Exit(2)
    reset(workspace, -1 if quiet else 1 if verbose else 0)


app.add_typer(characters.app, name="character")
app.add_typer(takes.app, name="takes")
for module in (init, series, report, verify, demo, backends, studio):
    app.add_typer(module.app)
characters.app.add_typer(lora.app)


def main() -> None:  # pragma: no cover
    app()
