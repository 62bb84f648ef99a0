"""Reading a prompt as motion: vocabulary, order, counts, ignored words, negation and contradictions."""

from __future__ import annotations

import numpy as np

from storyengine.backends.motion.prompt import read_prompt
from storyengine.backends.motion.timeline import build


def kinds(r):
    return [(a.kind, a.direction, a.count, a.step) for a in r.actions]


def test_the_issue_prompt_is_read_in_order():
    r = read_prompt("static camera. she blinks twice, then slowly turns her head to the left and smiles")
    assert r.camera == "static"
    assert kinds(r) == [("blink", "", 2, 0), ("turn", "left", 0, 1), ("smile", "", 0, 1)]
    assert [a.speed for a in r.actions] == ["", "slow", "slow"]
    assert r.ignored == [] and r.resolved == []
    assert r.summary() == "camera: static; blink twice → turn head left (slow), smile (slow)"


def test_vocabulary_camera_moves():
    assert read_prompt("push in slowly").camera == "push_in"
    assert read_prompt("the camera pulls back").camera == "pull_out"
    assert read_prompt("zoom out").camera == "pull_out"
    r = read_prompt("pan left")
    assert (r.camera, r.camera_direction) == ("pan", "left")
    assert (read_prompt("tilt up").camera, read_prompt("tilt up").camera_direction) == ("tilt", "up")
    assert read_prompt("slow orbit right").camera == "orbit"
    assert read_prompt("handheld").handheld
    assert read_prompt("").camera == "auto" and read_prompt("").actions == []
    # "tilts her head" is the subject's roll, not the camera
    r = read_prompt("she tilts her head to the right")
    assert r.camera == "auto" and kinds(r) == [("roll", "right", 0, 0)]


def test_vocabulary_subject_and_light():
    r = read_prompt("she glances left, nods, a deep breath; he sways then shifts his weight; looks at the camera at the end. "
                    "the light passes, lamps flicker and the carriage dims")
    got = {(a.kind, a.direction) for a in r.actions}
    assert {("glance", "left"), ("nod", ""), ("breathe", ""), ("sway", ""), ("shift", ""), ("look_camera", ""),
            ("light_pass", ""), ("flicker", ""), ("dim", "")} <= got
    assert [a for a in r.actions if a.kind == "look_camera"][0].at == "end"
    assert "carriage" in r.ignored
    assert read_prompt("she blinks three times").actions[0].count == 3
    assert read_prompt("two blinks").actions[0].count == 2


def test_unknown_words_are_reported_not_errors():
    r = read_prompt("a dragon flies over the city, she blinks")
    assert r.ignored == ["dragon", "flies", "city"]
    assert kinds(r) == [("blink", "", 0, 0)]
    r = read_prompt("she looks")  # no direction: ignored, said so
    assert r.actions == [] and r.ignored == ["looks (no direction)"]


def test_contradictions_are_resolved_and_reported():
    r = read_prompt("static camera, push in")
    assert r.camera == "static"
    assert r.resolved == ["'push in' conflicts with 'static' named first: kept 'static'"]
    r = read_prompt("pan left then pan right")
    assert (r.camera, r.camera_direction) == ("pan", "left") and "pan right" in r.resolved[0]
    r = read_prompt("locked-off, handheld")
    assert r.camera == "static" and not r.handheld and "handheld" in r.resolved[0]


def test_negation_drops_the_action():
    r = read_prompt("she does not blink, she smiles")
    assert kinds(r) == [("smile", "", 0, 0)] and r.negated == ["blink"]


def test_schedule_is_deterministic_and_follows_the_steps():
    r = read_prompt("she blinks twice, then turns her head to the right")
    a = build(r, 4.0, 24, np.random.default_rng(5))
    b = build(r, 4.0, 24, np.random.default_rng(5))
    assert a.blinks == b.blinks and len(a.blinks) == 2
    assert all(0.1 <= d <= 0.3 for _, d in a.blinks)
    # both blinks in the first half, the turn in the second, to the right (+) by turn_degrees
    assert max(t for t, _ in a.blinks) < 2.0
    assert a.yaw(1.0) == 0.0 and a.yaw(4.0) == 10.0
    # not asked: no blink at all
    assert build(read_prompt("she smiles"), 4.0, 24, np.random.default_rng(5)).blinks == []


def test_plan_shows_what_the_prompt_was_read_as(tmp_path):
    """`storyengine plan` per shot: the reading, ignored words and resolutions as warnings, and in --json."""
    import json

    from PIL import Image
    from skimage import data
    from typer.testing import CliRunner

    from storyengine.cli import app

    Image.fromarray(data.coffee()).save(tmp_path / "cup.png")  # no face in it
    (tmp_path / "s.yaml").write_text(
        "series: s\nseed: 3\nwidth: 320\nheight: 180\nbackend: motion\nepisodes:\n  - id: e1\n    shots:\n"
        "      - id: a\n        still: cup.png\n        duration: 1\n"
        "        prompt: 'static camera, push in. a dragon flies, she blinks twice'\n")
    ws = tmp_path / "ws"
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "s.yaml"), "-w", str(ws), "--json"])
    assert r.exit_code == 0, r.output
    start = r.output.index("[")
    m = json.loads(r.output[start:])[0]["motion"]
    assert m["reads_prompt"] and m["read_as"] == "camera: static; blink twice"
    assert m["ignored"] == ["dragon", "flies"] and m["faces"] == 0 and m["skipped"] == ["blink twice"]
    assert m["resolved"] == ["'push in' conflicts with 'static' named first: kept 'static'"]
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "s.yaml"), "-w", str(ws)])
    out = " ".join(r.output.split())
    assert 'a: ignored: "dragon", "flies"' in out
    assert "a: resolved: 'push in' conflicts with 'static'" in out
    assert "no face found in the still: face motions skipped" in out


def test_backends_that_do_not_parse_the_prompt_say_so():
    from storyengine.backends.base import VideoBackend
    from storyengine.backends.motion import MotionBackend

    assert MotionBackend.reads_prompt and not VideoBackend.reads_prompt
    d = VideoBackend.describe_motion(None)
    assert not d["reads_prompt"] and "not parsed" in d["read_as"]
