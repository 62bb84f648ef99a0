"""Spec loading and planning: errors name file, line and field; plans are deterministic."""

import pytest

from conftest import save
from storyengine.errors import SpecError
from storyengine.planner import derive_seed, load_series, plan_series, take_plan
from storyengine.register import register_character

GOOD = """series: s
seed: 3
width: 320
height: 180
episodes:
  - id: day-1
    shots:
      - id: a
        still: still.png
        characters: [mara]
        duration: 2
"""


def test_yaml_syntax_error_reports_line_and_column(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("series: s\nepisodes: [\n  - id: x\n")
    with pytest.raises(SpecError, match=r"s.yaml: YAML syntax error at line \d+, column \d+"):
        load_series(p)


def test_field_errors_name_path_line_and_value(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("duration: 2", "duration: -2\n        colour: red").replace("width: 320", "width: 321"))
    with pytest.raises(SpecError) as e:
        load_series(p)
    msg = str(e.value)
    assert f"{p}:3: width: Value error, must be even for H.264 yuv420p, got 321" in msg
    assert f"{p}:11: episodes.0.shots.0.duration: Input should be greater than 0 (got -2)" in msg
    assert f"{p}:12: episodes.0.shots.0.colour: Extra inputs are not permitted (got 'red')" in msg


def test_duplicate_shot_ids_and_unknown_ambience(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD + "      - id: a\n        still: still.png\n")
    with pytest.raises(SpecError, match="duplicate shot id 'a'"):
        load_series(p)
    p.write_text(GOOD.replace("  - id: day-1\n", "  - id: day-1\n    ambience: jungle\n"))
    with pytest.raises(SpecError, match="unknown ambience 'jungle'; available: carriage, platform, rain, room"):
        load_series(p)


def test_plan_resolves_and_checks(tmp_path, ws, reg, person_photos, astronaut):
    register_character(reg, ws, "mara", person_photos, kind="person")
    p = tmp_path / "s.yaml"
    p.write_text(GOOD)
    with pytest.raises(SpecError, match=r"shot 'a': still not found: .*still.png"):
        plan_series(load_series(p), p, reg, ws)
    save(tmp_path / "still.png", astronaut)
    plans = plan_series(load_series(p), p, reg, ws)
    assert len(plans) == 1 and plans[0].num_frames == 48 and plans[0].min_frames == 29
    assert plans[0].seed == derive_seed(3, "a") == plan_series(load_series(p), p, reg, ws)[0].seed
    assert plans[0].characters[0].handle == "mara" and len(plans[0].characters[0].photos) == 3
    assert take_plan(plans[0], 1).seed != plans[0].seed
    p.write_text(GOOD.replace("[mara]", "[nobody]"))
    with pytest.raises(SpecError, match=r"unknown character 'nobody' \(registered: mara\)"):
        plan_series(load_series(p), p, reg, ws)
    p.write_text(GOOD.replace("seed: 3", "seed: 3\nbackend: teleport"))
    with pytest.raises(Exception, match=r"unknown back-end 'teleport'; available: .*motion"):
        plan_series(load_series(p), p, reg, ws)
