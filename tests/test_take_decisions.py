"""The creator decides (issue 15): `takes use|accept|reject` and the spec's `take: N`, recorded in the registry and
honoured by the next render without regenerating; shown in `takes`, report.json and the episode's C2PA manifest."""

import json

import numpy as np
import yaml
from PIL import Image
from typer.testing import CliRunner

from conftest import save
from storyengine.cli import app
from storyengine.provenance import verify
from storyengine.registry import Registry
from storyengine.render import dry_run, render_series
from storyengine.settings import Settings
from storyengine.workspace import Workspace


def _spec(ws, shot_extra=None):
    rng = np.random.default_rng(0)
    still = (np.linspace(0, 255, 160)[None, :, None] * np.ones((90, 1, 3)) * 0.6 + rng.integers(0, 90, (90, 160, 3))).astype(np.uint8)
    save(ws.episodes / "stills" / "a.png", still)
    save(ws.episodes / "stills" / "b.png", still[:, ::-1].copy())
    spec = {"series": "diary", "fps": 12, "width": 160, "height": 90, "seed": 3, "backend_options": {"detect_faces": False},
            "episodes": [{"id": "day-1", "title_duration": 0.5, "shots": [
                {"id": "morning", "still": "stills/a.png", "duration": 1.0, "takes": 2, "moods": ["warm", "uneasy"],
                 **(shot_extra or {})},
                {"id": "evening", "still": "stills/b.png", "duration": 1.0}]}]}
    p = ws.episodes / "diary.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def _used(out, shot):
    r = next(s for s in out.shots if s.plan.shot_id == shot)
    return r.takes[r.chosen].take if r.chosen is not None else None


def _cli(ws, *args):
    r = CliRunner().invoke(app, [*args, "-w", str(ws.root)])
    return r


def test_use_pin_and_reject_are_honoured_without_regenerating(tmp_path):
    ws = Workspace.at(tmp_path / "ws").ensure()
    spec = _spec(ws)
    settings = Settings.load(ws.root, c2pa_dir=str(ws.root / "cred"), preset="ultrafast")
    first = render_series(ws, spec, settings=settings)
    assert first.generated == 3 and _used(first, "morning") == 1
    # the dry-run keys take 1 with its mood's options, as the render does: everything is cached
    assert [(d.shot_id, d.action) for d in dry_run(ws, spec, settings=settings)] == [("morning", "cached"), ("evening", "cached")]

    # 1. use take 2: recorded with time and reason, applied by the next render from the cache
    r = _cli(ws, "takes", "use", "morning", "2", "--reason", "the light is right", "--json")
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert (row["series"], row["take"], row["action"], row["reason"]) == ("diary", 2, "use", "the light is right")
    assert row["created_at"] and len(row["cache_key"]) == 64
    again = render_series(ws, spec, settings=settings)
    assert again.generated == 0 and _used(again, "morning") == 2
    ep = again.episodes[0]
    assert not ep.reused  # another take: the episode key changed, the episode was stitched again
    morning = next(s for s in again.shots if s.plan.shot_id == "morning")
    assert morning.verdict.reason.startswith("used by the creator (use take 2 (")
    rep = json.loads(again.report_path.read_text())
    shot = next(s for e in rep["episodes"] for s in e["shots"] if s["shot"] == "morning")
    assert shot["take_used"] == 2 and shot["human"]["action"] == "use" and shot["human"]["reason"] == "the light is right"
    man = verify(ep.path).to_dict()["episode"]["human_decisions"]
    assert [(d["shot"], d["take"], d["action"], d["reason"]) for d in man] == [("morning", 2, "use", "the light is right")]
    r = _cli(ws, "takes", "morning", "--json")  # `takes SHOT` still lists (the group's default)
    rows = json.loads(r.output)
    assert [(x["take"], x["used"], (x["human"] or {}).get("action")) for x in rows] == [(1, False, None), (2, True, "use")]
    listing = _cli(ws, "takes", "list", "morning").output
    assert "creator" in listing and "use: the" in listing and "★" in listing
    assert "human decision: morning use take 2 — the light is right" in CliRunner().invoke(app, ["verify", str(ep.path)]).output

    # 2. the spec's `take: 1` wins over the recorded use, still without generating
    pinned = render_series(ws, _spec(ws, {"take": 1}), settings=settings)
    assert pinned.generated == 0 and _used(pinned, "morning") == 1
    m = next(s for s in pinned.shots if s.plan.shot_id == "morning")
    assert m.takes[m.chosen].human["source"] == "spec"
    assert any("the spec pins take 1" in n for n in m.plan.notes)

    # 3. reject take 2 (withdraws the use): take 1 is used again, nothing generated
    spec = _spec(ws)
    assert _cli(ws, "takes", "reject", "morning", "2", "--reason", "she blinks").exit_code == 0
    after = render_series(ws, spec, settings=settings)
    assert after.generated == 0 and _used(after, "morning") == 1
    m = next(s for s in after.shots if s.plan.shot_id == "morning")
    assert m.takes[1].decision == "reject" and m.takes[1].verdict.reason.startswith("rejected by the creator (reject take 2")
    hist = list(Registry.open(ws).db.query("select take, action, reason from take_decisions order by id"))
    assert hist == [{"take": 2, "action": "use", "reason": "the light is right"},
                    {"take": 2, "action": "reject", "reason": "she blinks"}]
    # errors name the value
    r = _cli(ws, "takes", "use", "morning", "7")
    assert r.exit_code == 1 and "take 7 of shot 'morning' was never rendered (rendered takes: 1, 2)" in r.output

    # 4. a decision binds to the frames it was made on: after the shot's prompt changed, `use 2` is not applied
    assert _cli(ws, "takes", "use", "morning", "2").exit_code == 0
    edited = render_series(ws, _spec(ws, {"prompt": "she looks up"}), settings=settings)
    m = next(s for s in edited.shots if s.plan.shot_id == "morning")
    assert edited.generated == 2 and _used(edited, "morning") == 1 and m.takes[m.chosen].human is None
    assert any("`use` of take 2" in f and "not applied" in f for f in m.verdict.findings)


def test_accept_overrules_a_checker_reject_without_regenerating(tmp_path, astronaut):
    from storyengine.register import register_character

    ws = Workspace.at(tmp_path / "ws").ensure()
    photos = [save(tmp_path / "src" / "p1.png", astronaut), save(tmp_path / "src" / "p2.png", astronaut[:, ::-1].copy())]
    reg = Registry.open(ws)
    register_character(reg, ws, "mara", photos, kind="person", name="Mara", settings=Settings.load(ws.root))
    reg.close()
    save(ws.episodes / "stills" / "face.png", np.asarray(Image.fromarray(astronaut).resize((160, 120))))
    spec = {"series": "gone", "fps": 12, "width": 160, "height": 120, "seed": 2,
            "episodes": [{"id": "day-9", "title_duration": 0.5,
                          "shots": [{"id": "face", "still": "stills/face.png", "characters": ["mara"], "duration": 1.0,
                                     "bound": 1.0}]}]}
    p = ws.episodes / "gone.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    settings = Settings.load(ws.root, c2pa_dir=str(ws.root / "cred"), preset="ultrafast", max_takes=1)
    out = render_series(ws, p, settings=settings)
    assert out.episodes[0].rejected == ["face"]
    assert _cli(ws, "takes", "accept", "face", "1", "--reason", "close enough for a profile").exit_code == 0
    out = render_series(ws, p, settings=settings)
    ep = out.episodes[0]
    assert out.generated == 0 and ep.used == ["face"] and ep.rejected == []
    v = out.shots[0].verdict
    assert v.decision == "accept" and (v.keep_start, v.keep_end) == (0, out.shots[0].takes[0].num_frames)
    assert v.reason.startswith("accepted by the creator (accept take 1 (") and "checker: reject — frames" in v.reason
    man = verify(ep.path).to_dict()["episode"]["human_decisions"]
    assert [(d["shot"], d["action"], d["reason"]) for d in man] == [("face", "accept", "close enough for a profile")]
