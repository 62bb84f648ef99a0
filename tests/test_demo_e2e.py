"""The whole chain, small: demo --days 2 at 320x180 in a temp workspace, asserted through ffprobe and SQLite."""

import json

import pytest
from typer.testing import CliRunner

from storyengine import media
from storyengine.cli import app
from storyengine.registry import Registry
from storyengine.workspace import Workspace


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    res = CliRunner().invoke(app, ["demo", "-w", str(root), "--days", "2", "--width", "320", "--height", "180", "--seconds", "3"])
    assert res.exit_code == 0, res.output
    return Workspace.at(root)


def test_registry_rows(demo_ws):
    reg = Registry.open(demo_ws)
    assert {c["handle"]: c["kind"] for c in reg.characters()} == {"chelsea": "pet", "mara": "person"}
    assert reg.db["embeddings"].count >= 5
    takes = {t["shot_id"]: t for t in reg.db.query("select * from takes where decision != 'retry'")}
    assert set(takes) == {"day-1-morning", "day-1-evening", "day-2-morning", "day-2-evening"}
    assert takes["day-2-evening"]["decision"] == "reject"
    assert all(takes[s]["decision"] == "accept" for s in ("day-1-morning", "day-1-evening", "day-2-morning"))
    # per-frame similarities stored: every frame of the accepted 3 s shots at 24 fps
    n = reg.db.execute("select count(*) from frame_scores where take_id = ? and handle = 'mara'", [takes["day-1-morning"]["id"]]).fetchone()[0]
    assert n == 72
    assert reg.db.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_planted_impostor_is_rejected_with_reason(demo_ws):
    report = json.loads((demo_ws.renders / "subway-diary" / "report.json").read_text())
    shots = {s["shot"]: s for e in report["episodes"] for s in e["shots"]}
    bad = shots["day-2-evening"]
    assert bad["verdict"] == "reject" and bad["takes"] == 3
    assert "below bound" in bad["reason"]
    mara = bad["characters"][0]
    assert mara["character"] == "mara" and mara["mean"] < mara["bound"]
    good = shots["day-1-morning"]["characters"][0]
    assert good["min"] > good["bound"] and good["frames_scored"] == 72
    assert good["mean"] - mara["mean"] > 0.05


def test_episodes_are_h264_aac_and_durations_add_up(demo_ws):
    out = demo_ws.renders / "subway-diary"
    durations = {}
    for ep in ("day-1", "day-2"):
        info = media.probe(out / f"{ep}.mp4")
        codecs = {s["codec_type"]: s for s in info["streams"]}
        assert codecs["video"]["codec_name"] == "h264" and codecs["video"]["pix_fmt"] == "yuv420p"
        assert codecs["audio"]["codec_name"] == "aac"
        assert media.fps_of(codecs["video"]) == 24
        durations[ep] = media.count_frames(out / f"{ep}.mp4") / 24
        assert (out / f"{ep}.png").is_file()
    # title 2 s; shots 3 s; crossfades 0.75 s. Day 1: two shots; day 2: the impostor is left out.
    assert durations["day-1"] == pytest.approx(2 + 3 + 3 - 2 * 0.75, abs=1 / 24 + 1e-6)
    assert durations["day-2"] == pytest.approx(2 + 3 - 0.75, abs=1 / 24 + 1e-6)


def test_report_and_plan_commands(demo_ws):
    r = CliRunner().invoke(app, ["report", "subway-diary", "-w", str(demo_ws.root), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output)["series"] == "subway-diary"
    r = CliRunner().invoke(app, ["plan", str(demo_ws.episodes / "subway-diary.yaml"), "-w", str(demo_ws.root), "--json"])
    assert r.exit_code == 0
    plans = json.loads(r.output)
    assert [p["num_frames"] for p in plans] == [72, 72, 72, 72]
    assert plans[0]["seed"] == json.loads(r.output)[0]["seed"]


def test_every_command_has_help():
    for cmd in (["--help"], ["character", "--help"], ["character", "add", "--help"], ["character", "list", "--help"],
                ["character", "show", "--help"], ["plan", "--help"], ["render", "--help"], ["report", "--help"],
                ["check", "--help"], ["verify", "--help"], ["demo", "--help"]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 0 and "Usage" in r.output, cmd


def test_the_stranger_on_day_1_is_anonymised_in_every_frame(demo_ws):
    """Day 1 morning has a bystander (Grace Hopper further down the carriage): covered in every frame, never matched."""
    import numpy as np

    from storyengine.anonymize import _dlib
    from storyengine.demo.stills import bystander_sources

    report = json.loads((demo_ws.renders / "subway-diary" / "report.json").read_text())
    shots = {s["shot"]: s for e in report["episodes"] for s in e["shots"]}
    anon = shots["day-1-morning"]["anonymized"]
    assert anon["faces"] == 1 and anon["frames"] == [[0, 71]] and anon["kept"] == ["mara"]
    assert shots["day-1-evening"]["anonymized"]["faces"] == 0  # the cat fills the far side: no stranger
    stranger = bystander_sources()[-1]
    enc = _dlib(small=True)
    original = enc.embed(stranger.image)[0].vector
    reg = Registry.open(demo_ws)
    mara = np.stack([v.vector / np.linalg.norm(v.vector) for v in reg.vectors("mara", "dlib-face")])
    reg.close()
    take = demo_ws.root / shots["day-1-morning"]["path"]
    seen = [d.vector for i, f in enumerate(media.iter_frames(take)) if i % 6 == 0 for d in enc.embed(f)]
    others = [float(v @ original) for v in seen if float(np.max(mara @ v)) < enc.same_bound]  # every face but Mara's
    assert len(seen) - len(others) == 12  # Mara is found, untouched, in each of the 12 sampled frames
    assert max(others, default=0.0) < enc.same_bound - 0.02, others
