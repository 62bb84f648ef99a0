"""Spec loading and planning: errors name file, line and field; plans are deterministic."""

import json

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


def _with_adapter(reg, base, trigger="mara_p", weight=0.8):
    reg.db["adapters"].insert({"handle": "mara", "path": "characters/mara/adapters/a.safetensors", "sha256": "0" * 64,
                               "base": base, "trigger": trigger, "weight": weight, "rank": 4, "added_at": "now"})


def test_plan_follows_the_backends_rules_and_records_conditioning(tmp_path, ws, reg, person_photos, astronaut):
    from typer.testing import CliRunner

    from storyengine.cli import app

    register_character(reg, ws, "mara", person_photos, kind="person")
    save(tmp_path / "still.png", astronaut)
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("seed: 3", "seed: 3\nbackend: wan-vace\nfps: 16")
                 + "        prompt: she looks up\n      - id: b\n        still: previous\n        characters: [mara]\n        duration: 1\n")
    _with_adapter(reg, "Wan-AI/Wan2.1-VACE-1.3B-diffusers")
    a, b = plan_series(load_series(p), p, reg, ws)
    assert a.num_frames == 33 and b.num_frames == 17  # 32 and 16 snapped up to Wan's 4k+1
    assert a.conditioning == ["still", "reference_images:3", "lora:mara@0.8"]
    assert b.conditioning == ["still:previous:a", "reference_images:3", "lora:mara@0.8"] and b.continues_from == "a"
    assert a.prompt == "mara_p, she looks up" and b.prompt == "mara_p"
    res = CliRunner().invoke(app, ["plan", str(p), "-w", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown[1]["conditioning"] == b.conditioning and shown[1]["continues_from"] == "a"
    # the motion back-end takes no adapters: no trigger words, no LoRA label
    p.write_text(p.read_text().replace("backend: wan-vace", "backend: motion"))
    a, _ = plan_series(load_series(p), p, reg, ws)
    assert a.conditioning == ["still"] and a.prompt == "she looks up" and a.num_frames == 32


def test_plan_refuses_bad_options_and_adapters_of_another_family(tmp_path, ws, reg, person_photos, astronaut):
    register_character(reg, ws, "mara", person_photos, kind="person")
    save(tmp_path / "still.png", astronaut)
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("seed: 3", "seed: 3\nbackend: wan\nbackend_options: {steps: 0}"))
    with pytest.raises(SpecError, match=r"shot 'a': back-end 'wan' options: steps: Input should be greater than or equal to 1 \(got 0\)"):
        plan_series(load_series(p), p, reg, ws)
    p.write_text(GOOD.replace("seed: 3", "seed: 3\nbackend: wan"))
    _with_adapter(reg, "Lightricks/LTX-Video")
    with pytest.raises(SpecError, match=r"shot 'a': wan: adapter .*a.safetensors' was trained for 'Lightricks/LTX-Video' \(ltx\)"):
        plan_series(load_series(p), p, reg, ws)
