"""`storyengine init [DIR]`: a new workspace with a commented series spec that plans as it is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from ..errors import StoryEngineError
from .common import STATE, JsonOpt, command, commands, emit_json, fail, info, say

app = commands()

TEMPLATE = """\
# A storyengine series spec: one file per series, every path relative to this file.
#   plan it (nothing rendered):  storyengine plan episodes/{name}.yaml
#   render it:                   storyengine render episodes/{name}.yaml
# Every field is documented in docs/spec.md and docs/episodes.md; unknown keys are refused.

series: {name}{pad}# lowercase slug; renders go to renders/{name}/
title: {title}
backend: motion               # motion (CPU, no weights) | wan | wan-vace | ltx | cogvideox | svd | consisid
fps: 24
width: 640                    # even numbers (H.264 4:2:0)
height: 360
seed: 7                       # each shot's seed derives from it and the shot id unless the shot sets `seed`

episodes:
  - id: episode-1
    title: "Episode 1"        # shown on the title card
    ambience: room            # carriage | platform | rain | room
    transition: {{type: crossfade, duration: 0.75}}   # cut | crossfade | dip-to-black
    shots:
      - id: opening           # unique across the series
        still: stills/opening.png   # the first frame: a placeholder, replace it with your own picture
        # Register the people and pets first (storyengine character add mara photo-1.jpg photo-2.jpg),
        # then list their handles here; the drift checker rejects takes where they stop looking like themselves.
        characters: []
        duration: 4.0         # seconds
        # How the camera, the light and the face move (docs/motion.md lists the words; `plan` shows how it
        # read them). On your own still with a face, try: "static camera. she blinks, then slowly turns her head".
        prompt: "slow push in; the light passes"
      # - id: second-look
      #   still: previous     # start from the last accepted frame of the shot before
      #   characters: []
      #   duration: 3.0
      #   prompt: "she looks up"
"""


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return (s or "my-series")[:63]


def _placeholder_still(path: Path, width: int = 640, height: int = 360) -> None:
    """A soft grey-blue gradient with a dark band: a still that plans and renders, obviously a stand-in."""
    import numpy as np
    from PIL import Image

    from ..workspace import atomic_path

    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    rgb = 60 + 120 * (1 - y) * np.array([0.75, 0.85, 1.0], dtype=np.float32) + 30 * x
    rgb[int(height * 0.72):int(height * 0.78)] *= 0.55
    with atomic_path(path) as tmp:
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(tmp, format="PNG")


@command(app, "init")
def init_cmd(directory: Optional[Path] = typer.Argument(None, metavar="DIR", help="Folder to make a workspace (default: -w or the current folder)."),
             name: Optional[str] = typer.Option(None, "--name", metavar="SERIES", help="Series name (default: from the folder name)."),
             as_json: bool = JsonOpt) -> None:
    """Make a workspace (characters/, episodes/, renders/) with a commented series spec and a placeholder still.

    Example: storyengine init my-show && storyengine plan my-show/episodes/my-show.yaml
    """
    from ..workspace import Workspace, atomic_path

    root = directory or STATE.workspace or Path(".")
    try:
        ws = Workspace.at(root)
        series = _slug(name or ws.root.name)
        spec = ws.episodes / f"{series}.yaml"
        if spec.exists():
            raise StoryEngineError(f"{spec} already exists; pass --name to start another series")
        existed = ws.exists()
        ws.ensure()
        still = ws.episodes / "stills" / "opening.png"
        if not still.exists():
            _placeholder_still(still)
        title = series.replace("-", " ").replace("_", " ").title()
        with atomic_path(spec) as tmp:
            tmp.write_text(TEMPLATE.format(name=series, pad=" " * max(1, 22 - len(series)), title=title), encoding="utf-8")
    except (StoryEngineError, OSError) as e:
        fail(e)
    if as_json:
        emit_json({"workspace": str(ws.root), "spec": str(spec), "still": str(still), "created": not existed})
        return
    say(f"{'workspace' if not existed else 'spec added to workspace'} {ws.root}")
    say(f"spec: {spec}")
    info(f"next: storyengine plan {spec}")
