"""Issue 14: faults a creator will meet, through the render driver — nothing lost, nothing half-made."""

from __future__ import annotations

import errno
import hashlib

import numpy as np
import pytest
from conftest import save

from storyengine.episode import LoadedSpec
from storyengine.errors import StoryEngineError
from storyengine.registry import Registry
from storyengine.render import RenderRun
from storyengine.settings import Settings
from storyengine.workspace import Workspace

SPEC = ("series: s\nwidth: 64\nheight: 36\nfps: 8\nepisodes:\n"
        "  - id: day-1\n    title: {title}\n    title_duration: 0\n    shots:\n"
        "      - id: a\n        still: still.png\n        duration: 0.5\n")


class Quiet:
    def start(self, *a, **k): pass
    def update(self, *a, **k): pass
    def done(self, *a, **k): pass


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace.at(tmp_path / "ws").ensure()
    save(ws.episodes / "still.png", np.random.default_rng(0).integers(0, 255, (72, 128, 3), dtype=np.uint8))
    return ws


def render(ws: Workspace, title: str, settings: Settings | None = None):
    (ws.episodes / "s.yaml").write_text(SPEC.format(title=title))
    reg = Registry.open(ws)
    try:
        return RenderRun(LoadedSpec.load(ws.episodes / "s.yaml", ws), settings or Settings(max_takes=1), reg, Quiet()).run()
    finally:
        reg.close()


def digest(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_episode_appears_only_once_signed(ws, monkeypatch, tmp_path):
    import storyengine.episode as episode

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the development credential is made there
    render(ws, "One")
    ep = ws.renders / "s" / "day-1.mp4"
    before = digest(ep)

    def disk_full(path, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(episode, "sign_episode", disk_full)
    with pytest.raises(StoryEngineError, match=r"file too large / disk full"):
        render(ws, "Two")  # a new title: the episode is stitched again, then signing fails
    assert digest(ep) == before  # the earlier, signed episode is untouched
    assert not [p.name for p in (ws.renders / "s").iterdir() if p.name.startswith(".")]
    ep.unlink()
    with pytest.raises(StoryEngineError):
        render(ws, "Three")
    assert not ep.exists()  # an unsigned episode never appears under its name
    assert not [p.name for p in (ws.renders / "s").iterdir() if p.name.startswith(".")]
