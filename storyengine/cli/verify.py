"""`storyengine verify`: the C2PA content credentials of a rendered file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import StoryEngineError
from .common import JsonOpt, command, commands, emit_json, fail, say

app = commands()


@command(app, "verify")
def verify_cmd(file: Path = typer.Argument(..., metavar="FILE", help="An MP4 (or image) to check for C2PA content credentials."),
               trust_anchors: Optional[Path] = typer.Option(None, "--trust-anchors", metavar="PEM",
                                                            help="PEM file of trusted root certificates."),
               as_json: bool = JsonOpt) -> None:
    """Print a file's C2PA manifest summary and validation state; exit 0 valid, 1 invalid, 2 missing.

    Example: storyengine verify renders/subway-diary/day-1.mp4
    """
    from ..provenance import verify

    try:
        res = verify(file, trust_anchors=trust_anchors)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json(res.to_dict())
    else:
        for line in res.lines():
            say(line)
    raise typer.Exit({"valid": 0, "invalid": 1}.get(res.state, 2))
