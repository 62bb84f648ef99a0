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


TWO = ("series: s\nwidth: 64\nheight: 36\nfps: 8\nepisodes:\n"
       "  - id: day-1\n    title_duration: 0\n    shots:\n"
       "      - id: a\n        still: still.png\n        duration: 0.5\n"
       "{b}")
B = "      - id: b\n        still: still.png\n        duration: 0.5\n"


def run_spec(ws: Workspace, name: str, text: str, settings: Settings | None = None):
    (ws.episodes / name).write_text(text)
    reg = Registry.open(ws)
    try:
        return RenderRun(LoadedSpec.load(ws.episodes / name, ws), settings or Settings(max_takes=1, sign=False), reg,
                         Quiet()).run()
    finally:
        reg.close()


def test_report_lists_only_the_shots_of_the_episode_on_disk(ws):
    from storyengine.media import count_frames
    from storyengine.report import build_report

    run_spec(ws, "s.yaml", TWO.format(b=B))
    run_spec(ws, "s.yaml", TWO.format(b=""))  # shot b removed, the episode re-rendered
    reg = Registry.open(ws)
    try:
        rep = build_report(reg, "s")
    finally:
        reg.close()
    [ep] = rep["episodes"]
    assert [s["shot"] for s in ep["shots"]] == ["a"] and ep["shots_used"] == ["a"]
    assert ep["frames"] == 4 == count_frames(ws.renders / "s" / "day-1.mp4")  # the report and the file agree


def test_second_spec_with_the_same_series_is_refused(ws):
    run_spec(ws, "s.yaml", TWO.format(b=""))
    before = (ws.renders / "s" / "day-1.mp4").read_bytes()
    with pytest.raises(StoryEngineError) as e:
        run_spec(ws, "other.yaml", TWO.format(b=B))
    assert str(e.value) == (f"{ws.episodes / 'other.yaml'}: series 's' is already rendered here from "
                            f"{ws.episodes / 's.yaml'}; two specs would overwrite each other's episodes in renders/s/. "
                            f"Give this spec another `series:` name, or move the other spec away")
    assert (ws.renders / "s" / "day-1.mp4").read_bytes() == before
    reg = Registry.open(ws)
    try:
        assert reg.db["runs"].count == 1  # refused before a run row
    finally:
        reg.close()


def test_sigterm_during_stitching_is_a_clean_interrupt_and_temp_files_are_swept(ws, monkeypatch, tmp_path):
    import os
    import signal
    import tempfile

    import storyengine.episode as episode
    from storyengine.errors import Interrupted

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real = episode.stitch_episode

    def stitch_then_terminated(segments, out_path, opts):
        real(segments, out_path, opts)  # the staged file exists: SIGTERM arrives just before signing
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(episode, "stitch_episode", stitch_then_terminated)
    with pytest.raises(Interrupted, match=r"render of series 's' interrupted \(run 1\); finished takes and episodes are "
                                          r"kept: run the same command again to resume"):
        run_spec(ws, "s.yaml", TWO.format(b=""))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
    out = ws.renders / "s"
    assert not (out / "day-1.mp4").exists() and not [p.name for p in out.iterdir() if p.name.startswith(".")]
    reg = Registry.open(ws)
    try:
        assert [r["status"] for r in reg.db["runs"].rows] == ["interrupted"]
        assert reg.db["takes"].count == 1  # the finished take is kept
    finally:
        reg.close()
    # what a kill -9 leaves: a staged episode, a stitch folder of a dead process; both go at the next start
    monkeypatch.setattr(episode, "stitch_episode", real)
    (out / ".day-1.mp4.0a1b2c3d.mp4").write_bytes(b"half an episode")
    dead = tmp_path / "tmp" / "storyengine-stitch-999999999-abc"
    dead.mkdir()
    (dead / "bed.wav").write_bytes(b"RIFF")
    mine = tmp_path / "tmp" / f"storyengine-stitch-{os.getppid()}-live"  # a live process's folder stays
    mine.mkdir()
    run_spec(ws, "s.yaml", TWO.format(b=""))
    assert not (out / ".day-1.mp4.0a1b2c3d.mp4").exists() and not dead.exists() and mine.exists()
    assert (out / "day-1.mp4").is_file()
    reg = Registry.open(ws)
    try:
        assert [r["status"] for r in reg.db["runs"].rows] == ["interrupted", "done"]
        assert [r["generated"] for r in reg.db["takes"].rows] == [1, 0]  # resumed: nothing generated twice
    finally:
        reg.close()


@pytest.mark.parametrize("damage", ["bytes", "shape"])
def test_a_damaged_cache_entry_is_reported_dropped_and_regenerated(ws, caplog, damage):
    from storyengine.media import count_frames

    run_spec(ws, "s.yaml", TWO.format(b=""))
    cache = ws.renders / "s" / "cache"
    [mp4] = list((cache / "takes").glob("*.mp4"))
    if damage == "bytes":  # same size, other bytes: "moov atom not found" before
        with open(mp4, "r+b") as f:
            f.seek(0)
            f.write(b"\0" * 64)
    else:
        mp4.with_suffix(".json").write_text("[1, 2]")
    rec = cache / "episodes" / "day-1.json"
    rec.write_text(rec.read_text()[:7])  # a truncated episode record
    with caplog.at_level("WARNING", logger="storyengine"):
        out = run_spec(ws, "s.yaml", TWO.format(b=""))
    assert out.generated == 1  # the damaged take was generated again
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"damaged take in the cache {mp4}: ") and m.endswith("dropped, it is generated again")
               for m in msgs), msgs
    assert f"damaged episode record {rec}; the episode is stitched again" in msgs
    assert count_frames(mp4) == 4 and count_frames(ws.renders / "s" / "day-1.mp4") == 4
    assert count_frames(ws.renders / "s" / "takes" / "a" / next((ws.renders / "s" / "takes" / "a").iterdir()).name) == 4
