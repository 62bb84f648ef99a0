"""RenderRun, the driver a second front-end calls: events through the Reporter, state on the object."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save

from storyengine.episode import LoadedSpec
from storyengine.errors import SpecError
from storyengine.registry import Registry
from storyengine.render import RenderRun, render_series
from storyengine.settings import Settings
from storyengine.workspace import Workspace

SPEC = ("series: s\nwidth: 64\nheight: 36\nfps: 8\nepisodes:\n"
        "  - id: e1\n    title_duration: 0\n    transition: {type: cut}\n    shots:\n"
        "      - id: a\n        still: still.png\n        duration: 0.5\n"
        "      - id: b\n        still: still.png\n        duration: 0.5\n"
        "  - id: e2\n    title_duration: 0\n    shots:\n"
        "      - id: c\n        still: still.png\n        duration: 0.5\n")


class Recorder:
    """A reporter as a web page would write one: bars ignored, events kept."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.bars: dict[str, int] = {}

    def start(self, key, description, total):
        self.bars[key] = 0

    def update(self, key, completed, description=None):
        self.bars[key] = completed

    def done(self, key):
        pass

    def event(self, kind, **data):
        self.events.append((kind, data))


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace.at(tmp_path / "ws")
    ws.ensure()
    rng = np.random.default_rng(0)
    save(ws.episodes / "still.png", rng.integers(0, 255, (72, 128, 3), dtype=np.uint8))
    (ws.episodes / "s.yaml").write_text(SPEC)
    return ws


def test_render_run_reports_events_and_stitches_each_episode_once(ws):
    settings = Settings(sign=False, max_takes=1)
    rec = Recorder()
    reg = Registry.open(ws)
    try:
        run = RenderRun(LoadedSpec.load(ws.episodes / "s.yaml", ws), settings, reg, rec)
        assert [p.shot_id for p in run.plans] == ["a", "b", "c"] and run.wanted == {"e1": ["a", "b"], "e2": ["c"]}
        assert not (ws.renders / "s").exists()  # construction validates and plans; nothing is written
        out = run.run()
    finally:
        reg.close()
    kinds = [k for k, _ in rec.events]
    assert kinds == ["run", "shot", "shot", "episode", "shot", "episode", "finished"]
    run_ev = rec.events[0][1]
    assert run_ev == {"run_id": out.run_id, "series": "s", "shots": 3}
    shots = [d for k, d in rec.events if k == "shot"]
    assert [(d["shot"], d["episode"], d["decision"], d["take"], d["takes"], d["generated"]) for d in shots] == [
        ("a", "e1", "accept", 1, 1, 1), ("b", "e1", "accept", 1, 1, 1), ("c", "e2", "accept", 1, 1, 1)]
    eps = {d["episode"]: d for k, d in rec.events if k == "episode"}
    assert eps["e1"]["frames"] == 8 and eps["e2"]["frames"] == 4 and not eps["e1"]["reused"]
    assert rec.events[-1] == ("finished", {"run_id": out.run_id, "status": "done"})
    assert rec.bars["series"] == 3 and run.stitched == {"e1", "e2"}
    assert [e.episode_id for e in out.episodes] == ["e1", "e2"] and out.generated == 3
    assert json.loads((ws.renders / "s" / "report.json").read_text())["run"] == out.run_id
    # the same spec again through the wrapper: every take cached, both episodes kept as they are
    rec2 = Recorder()
    again = render_series(ws, ws.episodes / "s.yaml", settings=settings, reporter=rec2)
    assert again.generated == 0 and [e.reused for e in again.episodes] == [True, True]
    assert [d["reused"] for k, d in rec2.events if k == "episode"] == [True, True]


def test_loaded_spec_names_the_yaml_line_of_a_missing_file(ws):
    (ws.episodes / "s.yaml").write_text(SPEC.replace("    title_duration: 0\n", "    title_duration: 0\n"
                                                     "    finish: {lut: looks/none.cube}\n", 1))
    loaded = LoadedSpec.load(ws.episodes / "s.yaml", ws)
    with pytest.raises(SpecError) as e:
        loaded.check_files()
    assert str(e.value) == (f"{ws.episodes / 's.yaml'}:8: episodes.0.finish.lut: file not found: "
                            f"{ws.episodes / 'looks' / 'none.cube'}")
    assert loaded.finish_of(loaded.spec.episodes[1])[1] == ("finish",)
