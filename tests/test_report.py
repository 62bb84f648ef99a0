"""`storyengine check` and `storyengine report` end to end: real clips, a real registry, Chromium for the HTML."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

import evalclips as E
from storyengine.cli import app
from storyengine.consistency import check, references_for
from storyengine.registry import Registry
from storyengine.settings import Settings
from storyengine.workspace import Workspace

N = 16
SHOTS = [("day-1", "d1-morning", "clean-light", ""), ("day-1", "d1-evening", "swap", "hanks"),
         ("day-2", "d2-morning", "clean-rotate", ""), ("day-2", "d2-evening", "swap-mid", "t1b")]


def _record(reg, run_id, ep, shot, path, res, take=1):
    v = res.verdict
    reg.record_take(
        {"run_id": run_id, "series": "week", "episode_id": ep, "shot_id": shot, "take": take, "seed": 1, "backend": "test",
         "path": str(path.relative_to(reg.workspace.root)), "num_frames": res.num_frames, "fps": E.FPS, "mode": v.mode,
         "decision": v.decision, "reason": v.reason, "keep_start": v.keep_start, "keep_end": v.keep_end, "conditioning": "[]",
         "flicker": v.flicker, "findings": json.dumps(v.findings)},
        [{**s.model_dump(), "mean_vector": json.dumps(s.mean_vector) if s.mean_vector else None} for s in v.summaries],
        [{"frame": s.index, "time": s.time, "handle": s.character, "encoder": s.encoder, "similarity": s.similarity,
          "box": json.dumps(s.box) if s.box else None, "drifted": int(s.drifted), "centroid": s.centroid, "source": s.source}
         for s in res.scores])


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """A workspace with mara registered and a two-episode series checked and recorded as render does."""
    from PIL import Image

    from storyengine.register import register_character

    root = tmp_path_factory.mktemp("week")
    ws = Workspace.at(root).ensure()
    photos = []
    for i, p in enumerate(E.reference_photos()):
        photos.append(root / f"p{i}.png")
        Image.fromarray(p).save(photos[-1])
    reg = Registry.open(ws)
    register_character(reg, ws, "mara", photos, kind="person", name="Mara", settings=Settings())
    refs = references_for(reg, "mara")
    run = reg.start_run("week", "week.yaml", "test", {})
    settings = Settings(detect_stride=4)
    for ep, shot, kind, other in SHOTS:
        clip = E.make_clip("swap", N, other=other, span=(6, 9)) if kind == "swap-mid" else \
            E.make_clip(kind, N, other=other or "hopper", span=(12, 15))
        path = E.write_clip(clip, ws.renders / "week" / "takes" / f"{shot}.mp4")
        res = check(path, refs, settings=settings, min_frames=8)
        _record(reg, run, ep, shot, path, res)
    for ep in ("day-1", "day-2"):
        reg.record_episode({"run_id": run, "series": "week", "episode_id": ep, "path": f"renders/week/{ep}.mp4",
                            "duration": 2.0, "frames": 24, "shots_used": "[]", "shots_rejected": "[]"})
    reg.finish_run(run)
    reg.close()
    return ws


def test_check_json_lists_every_frame_and_uses_the_cache(week):
    path = week.renders / "week" / "takes" / "d2-evening.mp4"
    runner = CliRunner()
    r = runner.invoke(app, ["check", str(path), "-c", "mara", "-w", str(week.root), "--json"])
    assert r.exit_code == 2, r.output  # reject (0 accept, 1 trim, 2 reject, 3 error)
    doc = json.loads(r.output)
    assert [f["index"] for f in doc["frames"]] == list(range(N))
    assert set(doc["frames"][0]) >= {"index", "time", "character", "similarity", "drifted"}
    assert [f["index"] for f in doc["frames"] if f["drifted"]] == [6, 7, 8, 9]
    assert doc["verdict"] == "reject" and "frames 6–9 below bound" in doc["reason"] and doc["mode"] == "full"
    assert doc["summary"][0]["frames_drifted"] == 4 and doc["frames"][1]["time"] == pytest.approx(1 / E.FPS, abs=1e-3)
    r2 = runner.invoke(app, ["check", str(path), "-c", "mara", "-w", str(week.root), "--json"])
    again = json.loads(r2.output)
    assert again["cached"] is True and again["frames"] == doc["frames"]
    reg = Registry.open(week)
    assert reg.db["check_cache"].count >= 1
    r = runner.invoke(app, ["check", str(path), "-c", "mara", "-w", str(week.root), "--json", "--mode", "sampled"])
    doc = json.loads(r.output)
    assert doc["mode"] == "sampled" and len(doc["frames"]) == 16 and all(f["similarity"] >= 0 for f in doc["frames"])


def test_check_errors_name_the_value(week):
    path = week.renders / "week" / "takes" / "d2-evening.mp4"
    r = CliRunner().invoke(app, ["check", str(path), "-c", "nobody", "-w", str(week.root)])
    assert r.exit_code == 3 and "unknown character 'nobody'" in r.output
    r = CliRunner().invoke(app, ["check", str(path), "-c", "mara", "-w", str(week.root), "--mode", "fast"])
    assert r.exit_code == 3 and "unknown check mode 'fast'" in r.output


@pytest.mark.parametrize("shot,code,kept", [("d2-morning", 0, None), ("d1-evening", 1, "kept: frames 0–11 (0.00–1.00 s)"),
                                            ("d2-evening", 2, None)])
def test_check_exit_codes_accept_trim_reject(week, shot, code, kept):
    path = week.renders / "week" / "takes" / f"{shot}.mp4"
    r = CliRunner().invoke(app, ["check", str(path), "-c", "mara", "-w", str(week.root), "--min-duration", "0.66"])
    assert r.exit_code == code, r.output
    assert ("verdict: " + {0: "accept", 1: "trim", 2: "reject"}[code]) in r.output
    assert (kept in r.output) if kept else "kept:" not in r.output


def test_report_json_numbers(week):
    r = CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    shots = {s["shot"]: s for e in rep["episodes"] for s in e["shots"]}
    assert [e["episode"] for e in rep["episodes"]] == ["day-1", "day-2"]
    assert shots["d1-morning"]["verdict"] == "accept" and shots["d1-morning"]["frames_scored"] == N
    assert shots["d1-evening"]["verdict"] == "trim" and shots["d1-evening"]["keep"] == [0, 12]
    assert shots["d2-evening"]["verdict"] == "reject" and "frames 6–9" in shots["d2-evening"]["reason"]
    good = shots["d2-morning"]
    assert good["subject_consistency"] > 0.97 and 0 <= good["flicker"] < 0.1 and good["min"] >= good["characters"][0]["bound"]
    mara = rep["characters"][0]
    assert mara["character"] == "mara" and [e["episode"] for e in mara["episodes"]] == ["day-1", "day-2"]
    d1, d2 = mara["episodes"]
    assert d1["frames"] == N + 12 and d2["frames"] == N  # accepted frames only: the trimmed tail and the reject are out
    assert d1["min"] >= mara["bound"] and d2["to_previous"] > 0.98 and d2["to_first"] == d2["to_previous"]
    r = CliRunner().invoke(app, ["report", "-w", str(week.root), "--json", "--episode", "day-2"])
    assert [e["episode"] for e in json.loads(r.output)["episodes"]] == ["day-2"]
    r = CliRunner().invoke(app, ["report", "-w", str(week.root), "--episode", "day-9"])
    assert r.exit_code == 1 and "no rendered episode 'day-9'" in r.output


def test_report_table_and_fail_under(week):
    r = CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--fail-under", "0.5"])
    assert r.exit_code == 0 and "d2-evening" in r.output and "characters across the series" in r.output
    r = CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--fail-under", "0.995"])
    assert r.exit_code == 3 and "mean" in r.output and "< 0.995" in r.output


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_report_renders_in_chromium(week, tmp_path):
    out = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--html", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert "http://" not in page.replace("http://www.w3.org", "") and page.count("data:image/png;base64,") >= 5
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium; CI installs it)")
    flags = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'prof'}",
             "--enable-logging=stderr", "--v=0", "--window-size=1280,2400"]
    dom = subprocess.run(flags + ["--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for sid in ("summary", "week", "shot-d1-morning", "shot-d1-evening", "shot-d2-morning", "shot-d2-evening"):
        assert f'id="{sid}"' in dom.stdout
    # the worst frames of d2-evening are among the swapped 6-9 (which one is lowest moved by ~0.003 once tracked
    # scores are re-verified from scratch, issue 15)
    assert dom.stdout.count('class="thumbs"') == 4 and any(f"frame {i} · " in dom.stdout for i in range(6, 10))
    console = [l for l in dom.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert console == [], console
    shot = subprocess.run(flags + [f"--screenshot={tmp_path / 'shot.png'}", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and (tmp_path / "shot.png").stat().st_size > 20_000
    shutil.copy(tmp_path / "shot.png", "/tmp/report_screenshot.png") if shutil.os.access("/tmp", shutil.os.W_OK) else None
