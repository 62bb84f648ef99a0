"""Render end to end on the weight-free back-end: takes and moods, signing of every take and the
episode, `storyengine takes`, `storyengine verify`, and the spec's file checks."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from conftest import save
from storyengine import media
from storyengine.cli import app
from storyengine.errors import SpecError
from storyengine.finishing import write_cube
from storyengine.provenance import ALGORITHMIC_MEDIA, COMPOSITE_SYNTHETIC, verify
from storyengine.render import render_series
from storyengine.settings import Settings


def _spec(ws, extra_ep=None, extra_shot=None):
    rng = np.random.default_rng(0)
    still = (np.linspace(0, 255, 160)[None, :, None] * np.ones((120, 1, 3)) * 0.6 + rng.integers(0, 90, (120, 160, 3))).astype(np.uint8)
    save(ws.episodes / "stills" / "a.png", still)
    save(ws.episodes / "stills" / "b.png", still[:, ::-1].copy())
    write_cube(ws.episodes / "warm.cube", lambda x: np.clip(x * [1.06, 1.0, 0.92], 0, 1), size=9)
    ep = {"id": "day-1", "title": "Day 1", "title_duration": 0.5, "ambience": "platform",
          "transition": {"type": "crossfade", "duration": 0.25},
          "end_card": {"text": "Tomorrow", "duration": 0.5},
          "shots": [{"id": "morning", "still": "stills/a.png", "duration": 1.0, "takes": 2, "moods": ["warm", "uneasy"],
                     "captions": [{"text": "8:12", "start": 0.1}], **(extra_shot or {})},
                    {"id": "evening", "still": "stills/b.png", "duration": 1.0,
                     "transition": {"type": "dip-to-black", "duration": 0.25}}],
          **(extra_ep or {})}
    spec = {"series": "diary", "fps": 12, "width": 160, "height": 90, "seed": 3,
            "backend_options": {"detect_faces": False},
            "finish": {"lut": "warm.cube", "width": 320, "height": 180, "sharpen": 0.3, "grade": {"saturation": 1.1}},
            "episodes": [ep]}
    p = ws.episodes / "diary.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from storyengine.workspace import Workspace

    ws = Workspace.at(tmp_path_factory.mktemp("takes_ws")).ensure()
    spec = _spec(ws)
    settings = Settings.load(ws.root, c2pa_dir=str(ws.root / "cred"), preset="ultrafast")
    out = render_series(ws, spec, settings=settings)
    return ws, out


def test_every_take_is_kept_and_signed_and_the_best_is_used(rendered):
    ws, out = rendered
    takes = sorted((ws.renders / "diary" / "takes" / "morning").glob("*.mp4"))
    assert sorted(t.name.split("-")[-1] for t in takes) == ["uneasy.mp4", "warm.mp4"]
    for t in takes:
        r = verify(t)
        assert r.state == "valid" and r.development and r.digital_source_types == [ALGORITHMIC_MEDIA]
    used = next(s for s in out.shots if s.plan.shot_id == "morning")
    assert used.mood in ("warm", "uneasy") and used.path in takes


def test_episode_is_finished_signed_and_lists_its_takes(rendered):
    ws, out = rendered
    ep = out.episodes[0].path
    p = media.probe(ep)
    v = media.video_stream(p)
    assert (v["codec_name"], v["pix_fmt"], v["width"], v["height"], media.fps_of(v)) == ("h264", "yuv420p", 320, 180, 12)
    assert [s["codec_name"] for s in p["streams"]] == ["h264", "aac"]
    # 0.5 title + 1 + 1 + 0.5 end, one 0.25 s crossfade (title→morning) and one into the end card
    assert media.count_frames(ep) == 6 + 12 + 12 + 6 - 3 - 3
    r = verify(ep)
    assert r.state == "valid" and r.digital_source_types[:1] == [COMPOSITE_SYNTHETIC]
    assert r.episode["disclosure"] == {"mode": "label", "text": "AI-extended from a still photograph"}
    # each take is named by its shot and take number; the file stays the ingredient
    titles = [f"{s.plan.shot_id} take {s.chosen + 1}" for s in out.shots]
    assert r.ingredients == titles and r.episode["clips"] == titles  # the takes the episode uses, in order
    assert r.episode["files"] == [s.path.name for s in out.shots] and r.episode["left_out"] == []
    store = r.to_dict()
    assert store["ingredients"] == titles and "morning take" in "\n".join(r.lines())
    assert (ws.renders / "diary" / "day-1.png").is_file()
    # tampering with one byte of the episode's media is reported invalid
    data = bytearray(ep.read_bytes())
    data[data.index(b"mdat") + 200] ^= 0xFF
    bad = ep.with_name("tampered.mp4")
    bad.write_bytes(bytes(data))
    res = CliRunner().invoke(app, ["verify", str(bad)])
    assert res.exit_code == 1 and "INVALID" in res.output.upper()


def test_takes_command_lists_takes_and_marks_the_used_one(rendered):
    ws, _ = rendered
    r = CliRunner().invoke(app, ["takes", "morning", "-w", str(ws.root), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [(x["take"], x["mood"]) for x in rows] == [(1, "warm"), (2, "uneasy")]
    assert sum(x["used"] for x in rows) == 1 and len({x["seed"] for x in rows}) == 2
    r = CliRunner().invoke(app, ["takes", "morning", "-w", str(ws.root)])
    assert r.exit_code == 0 and "★" in r.output and "uneasy" in r.output
    r = CliRunner().invoke(app, ["takes", "nope", "-w", str(ws.root)])
    assert r.exit_code == 1 and "no takes of shot 'nope'" in r.output


def test_spec_files_are_checked_before_rendering(tmp_path):
    from storyengine.workspace import Workspace

    ws = Workspace.at(tmp_path / "ws").ensure()
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"RIFF")
    for shot, match in (({"audio": "../../outside.wav"}, r"episodes\.0\.shots\.0\.audio: '../../outside.wav' is outside the workspace"),
                        ({"audio": "missing.wav"}, r"diary.yaml:\d+: episodes\.0\.shots\.0\.audio: file not found")):
        spec = _spec(ws, extra_shot=shot)
        with pytest.raises(SpecError, match=match):
            render_series(ws, spec, settings=Settings.load(ws.root, sign=False))
    (ws.episodes / "warm.cube").write_text("LUT_3D_SIZE 2\n0 0 0\n")
    spec = ws.episodes / "diary.yaml"
    with pytest.raises(SpecError, match=r"finish\.lut: .*needs 8 rows"):
        render_series(ws, spec, settings=Settings.load(ws.root, sign=False))
    spec = _spec(ws, extra_shot={"moods": ["sad"]})
    with pytest.raises(SpecError, match=r"moods.*unknown mood 'sad'"):
        render_series(ws, spec, settings=Settings.load(ws.root, sign=False))


def test_episode_with_every_shot_rejected_is_signed(tmp_path, astronaut):
    """The only shot's check fails (bound 1.0): the title-only episode is still published and signed,
    with no clip ingredients and a manifest that names the rejected shot."""
    from storyengine.register import register_character
    from storyengine.registry import Registry
    from storyengine.workspace import Workspace

    ws = Workspace.at(tmp_path / "ws").ensure()
    photos = [save(tmp_path / "src" / "p1.png", astronaut), save(tmp_path / "src" / "p2.png", astronaut[:, ::-1].copy())]
    reg = Registry.open(ws)
    register_character(reg, ws, "mara", photos, kind="person", name="Mara", settings=Settings.load(ws.root))
    reg.close()
    save(ws.episodes / "stills" / "face.png", np.asarray(Image.fromarray(astronaut).resize((160, 120))))
    spec = {"series": "gone", "fps": 12, "width": 160, "height": 120, "seed": 2,
            "episodes": [{"id": "day-9", "title": "Day 9", "title_duration": 0.5,
                          "shots": [{"id": "face", "still": "stills/face.png", "characters": ["mara"], "duration": 1.0,
                                     "bound": 1.0}]}]}
    p = ws.episodes / "gone.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    settings = Settings.load(ws.root, c2pa_dir=str(ws.root / "cred"), preset="ultrafast", max_takes=1)
    out = render_series(ws, p, settings=settings)
    ep = out.episodes[0]
    assert ep.used == [] and ep.rejected == ["face"] and ep.path.is_file()
    r = verify(ep.path)
    assert r.state == "valid", r.failures
    assert r.ingredients == [] and r.digital_source_types == [COMPOSITE_SYNTHETIC]
    assert [a["action"] for a in r.actions] == ["c2pa.created"]
    assert "every shot was left out" in r.actions[0]["description"] and "face" in r.actions[0]["description"]
    d = r.to_dict()
    assert d["episode"]["left_out"] == ["face"] and d["episode"]["title_only"] is True and d["episode"]["clips"] == []
    assert d["episode"]["disclosure"]["mode"] == "label"
    res = CliRunner().invoke(app, ["verify", str(ep.path)])
    assert res.exit_code == 0 and "left out: face (every shot: title card only)" in res.output
