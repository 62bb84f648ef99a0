"""The whole chain, small: demo --days 2 at 320x180 in a temp workspace, asserted through the in-process probe
(PyAV) and SQLite; the repository's demo inputs (episodes/subway-diary.yaml, characters/*.yaml) kept equal to what
the demo writes.

The demo runs as a user's first command would on a bare machine: in a child process whose PATH holds
only the virtualenv's bin folder (no system ffmpeg or ffprobe), under umask 022.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from storyengine import media
from storyengine.cli import app
from storyengine.registry import Registry
from storyengine.workspace import Workspace


ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    if shutil.which("ffmpeg", path=VENV_BIN) or shutil.which("ffprobe", path=VENV_BIN):
        pytest.skip(f"{VENV_BIN} holds ffmpeg/ffprobe: cannot hide the system's tools from the demo")
    root = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORYENGINE_")}
    env.update(PATH=VENV_BIN, HF_HUB_OFFLINE="1", STORYENGINE_C2PA_DIR=str(tmp_path_factory.getbasetemp() / "c2pa"))
    code = "import os; os.umask(0o022); from storyengine.cli import app; app()"
    res = subprocess.run([sys.executable, "-c", code, "demo", "-w", str(root), "--days", "2", "--width", "320",
                          "--height", "180", "--seconds", "3", "--json"], env=env, cwd=root, capture_output=True,
                         text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return Workspace.at(root), json.loads(res.stdout), res.stderr


@pytest.fixture(scope="module")
def demo_ws(demo_run):
    return demo_run[0]


def test_demo_json_and_progress_lines(demo_run):
    ws, doc, stderr = demo_run
    assert doc["workspace"] == str(ws.root) and doc["spec"] == str(ws.episodes / "subway-diary.yaml")
    assert (doc["accepted"], doc["total"]) == (3, 4) and Path(doc["report"]).is_file()
    verdicts = {s["shot"]: s["verdict"] for s in doc["shots"]}
    assert verdicts["day-2-evening"] == "reject" and verdicts["day-1-morning"] == "accept"
    assert [e["episode"] for e in doc["episodes"]] == ["day-1", "day-2"]
    assert doc["episodes"][1]["rejected"] == ["day-2-evening"] and all(Path(e["path"]).is_file() for e in doc["episodes"])
    assert doc["takes"]["generated"] == sum(s["takes"] for s in doc["shots"])
    # stderr is not a terminal here: one timestamped line per finished shot, then per stitched episode
    shot_lines = [line for line in stderr.splitlines() if re.match(r"\[ *\d+\.\ds\] subway-diary: \d/4 shots", line)]
    assert [re.search(r"(\d)/4", line).group(1) for line in shot_lines] == ["1", "2", "3", "4"]
    assert sum("day-1: stitching" in line for line in stderr.splitlines()) == 1


def test_shipped_cards_are_the_demo_characters(demo_ws):
    """characters/mara.yaml and chelsea.yaml give the demo's photos pixel for pixel, and its registry rows."""
    from storyengine.cards import card_images, load_card

    reg = Registry.open(demo_ws)
    for handle in ("mara", "chelsea"):
        path = ROOT / "characters" / f"{handle}.yaml"
        card = load_card(path)
        row = reg.character(handle)
        assert (card.handle, card.name, card.kind, card.description, card.consent, card.licence) == \
            (handle, row["name"], row["kind"], row["description"], row["consent"], row["licence"])
        images = card_images(card, path)
        written = sorted((demo_ws.episodes / "sources").glob(f"{handle}-*.png"))
        assert len(images) == len(written) == 3
        for img, png in zip(images, written):
            assert np.array_equal(img, np.asarray(Image.open(png).convert("RGB"))), png.name


def test_character_add_from_card_registers_the_demo_photos(demo_ws, tmp_path):
    res = CliRunner().invoke(app, ["character", "add", "--from", str(ROOT / "characters" / "mara.yaml"), "-w",
                                   str(tmp_path / "ws"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["handle"] == "mara" and len(doc["accepted"]) == 3 and doc["rejected"] == []
    ours = {p["sha256"] for p in Registry.open(Workspace.at(tmp_path / "ws")).photos("mara")}
    assert ours == {p["sha256"] for p in Registry.open(demo_ws).photos("mara")}


def test_shipped_spec_is_what_the_demo_writes(demo_ws):
    """episodes/subway-diary.yaml is `storyengine demo`'s spec at its defaults (7 days, 640x360, 4 s shots):
    cut to the fixture's 2 days, 320x180 and 3 s, it equals the spec the demo just wrote."""
    shipped_text = (ROOT / "episodes" / "subway-diary.yaml").read_text(encoding="utf-8")
    written_text = (demo_ws.episodes / "subway-diary.yaml").read_text(encoding="utf-8")
    header = lambda t: [line for line in t.splitlines() if line.startswith("#")]
    assert header(shipped_text) == header(written_text)
    shipped = yaml.safe_load(shipped_text)
    assert (len(shipped["episodes"]), shipped["width"], shipped["height"]) == (7, 640, 360)
    assert {s["duration"] for e in shipped["episodes"] for s in e["shots"]} == {4.0}
    shipped["episodes"] = shipped["episodes"][:2]
    shipped["width"], shipped["height"] = 320, 180
    for e in shipped["episodes"]:
        for s in e["shots"]:
            s["duration"] = 3.0
    assert shipped == yaml.safe_load(written_text)


def test_registry_rows(demo_ws):
    reg = Registry.open(demo_ws)
    assert {c["handle"]: c["kind"] for c in reg.characters()} == {"chelsea": "pet", "mara": "person"}
    assert reg.db["embeddings"].count >= 5
    takes = {t["shot_id"]: t for t in reg.db.query("select * from takes where decision != 'retry'")}
    assert set(takes) == {"day-1-morning", "day-1-evening", "day-2-morning", "day-2-evening"}
    assert takes["day-2-evening"]["decision"] == "reject"
    # identity guard: each retry after a rejected take moves less, and its record says so
    reasons = [r["reason"] for r in reg.db.query("select reason from takes where shot_id = 'day-2-evening' order by take")]
    assert len(reasons) == 3 and "amplitude reduced" not in reasons[0]
    assert "motion amplitude reduced to 0.60" in reasons[1] and "motion amplitude reduced to 0.36" in reasons[2]
    assert all(takes[s]["decision"] == "accept" for s in ("day-1-morning", "day-1-evening", "day-2-morning"))
    # a character's own animated take is accepted on its first take (issue 15: no false retries)
    assert all(takes[s]["take"] == 1 for s in ("day-1-morning", "day-1-evening", "day-2-morning"))
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


def test_files_are_shared_as_the_umask_says(demo_ws):
    """Files written through temp + rename get 0666 less the umask (022 here), like any file: not 0600."""
    out = demo_ws.renders / "subway-diary"
    files = [out / "day-1.mp4", out / "day-2.mp4", out / "day-1.png", out / "report.json",
             demo_ws.episodes / "subway-diary.yaml", *demo_ws.episodes.glob("stills/*.png"),
             *demo_ws.characters.glob("*/photos/*"), *out.glob("cache/**/*.mp4"), *out.glob("cache/**/*.json")]
    assert len(files) > 12
    modes = {str(f.relative_to(demo_ws.root)): oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {"0o644"}, modes


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
                ["check", "--help"], ["verify", "--help"], ["demo", "--help"], ["init", "--help"], ["-h"]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 0 and "Usage" in r.output and "Example: storyengine" in r.output, cmd


def test_a_missing_media_tool_fails_before_any_work(tmp_path, monkeypatch):
    import imageio_ffmpeg

    def no_binary():
        raise RuntimeError("No ffmpeg exe could be found.")

    media.ffmpeg_exe.cache_clear()
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_binary)
    r = CliRunner().invoke(app, ["demo", "-w", str(tmp_path / "d"), "--days", "1"])
    assert r.exit_code == 1 and "no ffmpeg binary: No ffmpeg exe could be found." in r.output
    d = tmp_path / "d"  # nothing registered, no photo or still written
    assert not (d / "characters" / "registry.db").exists() and not (d / "episodes" / "stills").exists()
    monkeypatch.undo()
    media.ffmpeg_exe.cache_clear()
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(media.MediaError, match="PyAV is not installed: run `pip install av`"):
        media.require_tools()
    with pytest.raises(media.MediaError, match="PyAV is not installed"):
        media.probe(__file__)


def test_a_png_strip_per_shot_shows_the_motion(demo_ws):
    import numpy as np
    from PIL import Image

    strips = sorted((demo_ws.renders / "subway-diary" / "strips").glob("*.png"))
    assert [p.stem for p in strips] == ["day-1-evening", "day-1-morning", "day-2-evening", "day-2-morning"]
    img = np.asarray(Image.open(strips[1]).convert("L"), dtype=np.float32)
    assert img.shape == (120, 6 * 213)  # six frames at 120 px high (320x180 frames)
    first, last = img[:, :213], img[:, -213:]
    assert np.abs(first - last).mean() > 1.0  # the frames differ: the shot moves
