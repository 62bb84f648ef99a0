"""`still: previous`: spec rule, planning, the last accepted frame as the next still, for motion and a diffusers back-end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tiny_pipelines as tp
from conftest import save
from storyengine import media
from storyengine.continuity import chains, continue_from, last_accepted_frame
from storyengine.errors import SpecError, StoryEngineError
from storyengine.planner import load_series, plan_series
from storyengine.plugins import backend_class
from storyengine.render import render_series
from storyengine.specs import ShotPlan, Verdict

SPEC = """series: chain
backend: {backend}
fps: 8
width: 64
height: 48
seed: 2
episodes:
  - id: ep
    transition: {{type: cut, duration: 0}}
    title_duration: 0
    shots:
      - id: a
        still: still.png
        duration: {duration}
      - id: b
        still: previous
        duration: {duration}
      - id: c
        still: previous
        duration: {duration}
      - id: d
        still: other.png
        duration: {duration}
"""


def write_spec(folder: Path, backend: str = "motion", duration: float = 1.0) -> Path:
    rng = np.random.default_rng(3)
    base = np.zeros((96, 128, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, 128, dtype=np.uint8)[None]
    base[20:70, 40:90] = (240, 200, 40)  # a bright block: something to push towards
    save(folder / "still.png", np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8))
    save(folder / "other.png", np.full((96, 128, 3), 90, np.uint8))
    p = folder / "series.yaml"
    p.write_text(SPEC.format(backend=backend, duration=duration))
    return p


def test_first_shot_of_an_episode_cannot_be_previous(tmp_path):
    p = write_spec(tmp_path)
    p.write_text(p.read_text().replace("still: still.png", "still: previous"))
    with pytest.raises(SpecError, match=r"series.yaml:\d+: episodes.0.shots: .*shot 'a' opens the episode.*still: previous"):
        load_series(p)


def test_planner_marks_the_chain(tmp_path, ws, reg):
    p = write_spec(tmp_path)
    plans = plan_series(load_series(p), p, reg, ws)
    by = {x.shot_id: x for x in plans}
    assert [x.continues_from for x in plans] == [None, "a", "b", None]
    assert by["b"].still == by["c"].still == by["a"].still == str((tmp_path / "still.png").resolve())  # stand-in
    assert by["a"].conditioning == ["still"] and by["b"].conditioning == ["still:previous:a"]
    assert by["c"].conditioning == ["still:previous:b"]
    assert [[x.shot_id for x in chain] for chain in chains(plans)] == [["a", "b", "c"], ["d"]]
    with pytest.raises(StoryEngineError, match="'c' continues from 'b', which is not planned before it"):
        chains([by["c"], by["b"]])


def _take(path: Path, n: int = 8) -> Path:
    """A take whose frame i is a flat grey of 20 + 25·i (easy to tell apart after H.264)."""
    with media.VideoWriter(path, 32, 32, 8, crf=0, preset="veryfast") as w:
        for i in range(n):
            w.write(np.full((32, 32, 3), 20 + 25 * i, np.uint8))
    return path


def _plan(shot_id: str, still: Path, continues_from: str | None = None) -> ShotPlan:
    return ShotPlan(series="s", episode_id="e", shot_id=shot_id, index=0, still=str(still), characters=[], prompt="",
                    seed=1, fps=8, width=32, height=32, num_frames=8, duration=1.0, min_frames=4, backend="motion",
                    conditioning=["still:previous:" + continues_from] if continues_from else ["still"],
                    continues_from=continues_from)


@dataclass
class ShotOutcome:
    """What continue_from reads of a rendered shot (the continuity.Rendered protocol)."""

    plan: ShotPlan
    verdict: Verdict
    takes: int
    path: Path | None
    last_path: Path | None = None


def test_the_last_frame_of_the_kept_range_is_used(tmp_path):
    take = _take(tmp_path / "a.mp4")
    a = _plan("a", tmp_path / "a.png")
    trimmed = ShotOutcome(plan=a, verdict=Verdict(decision="trim", reason="drift at 5", keep_start=1, keep_end=5), takes=1, path=take)
    b = continue_from(_plan("b", tmp_path / "a.png", "a"), trimmed, tmp_path / "stills")
    assert b.still == str(tmp_path / "stills" / "a-last.png") and b.conditioning == ["still:previous:a"]
    assert abs(float(np.asarray(Image.open(b.still)).mean()) - (20 + 25 * 4)) < 2  # frame 4, not the file's last (7)
    with pytest.raises(Exception, match="has 8 frame"):
        last_accepted_frame(take, 9, tmp_path / "x.png")


def test_a_rejected_predecessor_falls_back_to_its_own_still(tmp_path):
    a = _plan("a", tmp_path / "a.png")
    rejected = ShotOutcome(plan=a, verdict=Verdict(decision="reject", reason="drift", keep_end=8), takes=3, path=None,
                           last_path=tmp_path / "a-3.mp4")
    b = continue_from(_plan("b", tmp_path / "a.png", "a"), rejected, tmp_path / "stills")
    assert b.still == str(tmp_path / "a.png") and b.conditioning == ["still:fallback:a"]
    assert not (tmp_path / "stills").exists()


def _first_and_last(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frames = list(media.iter_frames(path))
    return frames[0].astype(float), frames[-1].astype(float)


@pytest.mark.parametrize("bid", ["motion", "wan"])
def test_render_starts_each_link_from_the_accepted_last_frame(tmp_path, ws, bid):
    p = write_spec(ws.root / "episodes", backend=bid, duration=2.0)
    backend = None
    if bid != "motion":
        # Wan 2.1 I2V keeps its 512 text tokens (shorter drops the still's image tokens, issue 13)
        backend = backend_class(bid)({"steps": 2}, pipeline=tp.BUILDERS[bid]())
    out = render_series(ws, p, backend=backend)
    shots = {s.plan.shot_id: s for s in out.shots}
    stills = ws.series_dir("chain") / "stills"
    assert sorted(x.name for x in stills.iterdir()) == ["a-last.png", "b-last.png"]
    assert shots["b"].plan.still == str(stills / "a-last.png") and shots["c"].plan.still == str(stills / "b-last.png")
    assert shots["d"].plan.still.endswith("other.png")
    assert shots["a"].plan.num_frames == (16 if bid == "motion" else 17)  # Wan's 4k+1 rule, snapped up by the planner
    # the PNG is the predecessor's last kept frame, and the continuing take starts from it
    for prev, nxt in (("a", "b"), ("b", "c")):
        png = np.asarray(Image.open(stills / f"{prev}-last.png")).astype(float)
        _, prev_last = _first_and_last(shots[prev].path)
        nxt_first, _ = _first_and_last(shots[nxt].path)
        assert np.abs(png - prev_last).mean() < 0.5
        if bid == "motion":  # the motion back-end's frame 0 is the still's framing: the hand-over is near seamless
            assert np.abs(nxt_first - png).mean() < np.abs(nxt_first - _first_and_last(shots["d"].path)[0]).mean() / 4
    takes = {t["shot_id"]: json.loads(t["conditioning"]) for t in out_reg(ws).db["takes"].rows}
    assert takes["b"] == ["still:previous:a"] and takes["a"] == ["still"]


def out_reg(ws):
    from storyengine.registry import Registry

    return Registry.open(ws)
