"""`storyengine check` and `storyengine report` end to end: real clips, a real registry, Chromium for the HTML."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

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


def _record(reg, run_id, ep, shot, path, res, take=1, decision=None):
    v = res.verdict
    reg.record_take(
        {"run_id": run_id, "series": "week", "episode_id": ep, "shot_id": shot, "take": take, "seed": 1, "backend": "test",
         "path": str(path.relative_to(reg.workspace.root)), "num_frames": res.num_frames, "fps": E.FPS, "mode": v.mode,
         "decision": decision or v.decision, "reason": v.reason, "keep_start": v.keep_start, "keep_end": v.keep_end, "conditioning": "[]",
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
        if shot == "d2-evening":  # the renderer retried it once before giving up: take 1 stays in the registry
            _record(reg, run, ep, shot, path, res, take=1, decision="retry")
        _record(reg, run, ep, shot, path, res, take=2 if shot == "d2-evening" else 1)
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
    assert r.exit_code == 2 and "'fast' is not one of 'full', 'sampled'" in r.output  # a usage error: the choices


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
    r = CliRunner().invoke(app, ["report", "-w", str(week.root), "--json", "-e", "day-2", "-e", "day-1"])  # both kept
    assert [e["episode"] for e in json.loads(r.output)["episodes"]] == ["day-1", "day-2"]
    r = CliRunner().invoke(app, ["report", "-w", str(week.root), "-e", "day-1", "-e", "day-9"])
    assert r.exit_code == 1 and "no rendered episode 'day-9'" in r.stderr and r.stdout == ""


def test_report_table_and_fail_under(week):
    r = CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--fail-under", "0.5"])
    assert r.exit_code == 0, r.output
    # piped: tab-separated rows with full values, the shot table then each character by episode
    lines = r.stdout.splitlines()
    assert lines[0].split("\t")[:4] == ["episode", "shot", "character", "frames"]
    rows = [line.split("\t") for line in lines]
    reject = next(x for x in rows if x[1] == "d2-evening")
    assert reject[0] == "day-2" and reject[2] == "mara" and reject[11] == "reject" and "frames 6–9" in reject[12]
    assert any(x[:3] == ["character", "encoder", "episode"] for x in rows)
    assert any(x[0] == "mara" and x[2] == "day-2" for x in rows)
    r = CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--fail-under", "0.995"])
    assert r.exit_code == 3 and "mean" in r.output and "< 0.995" in r.output


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_html_report_renders_in_chromium(week, tmp_path):
    # day-1 is stitched (a take stands in for the episode), day-2 is not
    shutil.copy(week.renders / "week" / "takes" / "d1-morning.mp4", week.renders / "week" / "day-1.mp4")
    (week.renders / "week" / "report.json").write_text("{}")
    out = week.renders / "week" / "report.html"
    r = CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--html", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    # 1. The summary counts: accept, trim and accept of four shots; d2-evening took two takes
    text = _text(page)
    assert "3 of 4 shots accepted" in text and "1 of 2 episodes playable" in text
    assert "5 takes rendered" in text and "1 shot retried" in text and "1 trimmed" in text
    assert re.search(r'Left out: .*d2-evening.*reject.*frames 6–9', text)
    # 2. Players and links, relative to the page: the episode, every take, report.json
    assert page.count("<video") == 1 + 5 and 'src="day-1.mp4"' in page and 'src="takes/d1-morning.mp4"' in page
    assert 'href="report.json"' in page and "Not stitched yet" in page
    # 3. Every take side by side, the retried one too, with its verdict and reason
    sec = page[page.index('id="shot-d2-evening"'):]
    takes = re.findall(r'<article class="take (\w+)[^"]*" id="take-\d+">', sec)
    assert takes == ["retry", "reject"] and sec.count("frames 6–9 below bound") >= 3
    # 4. Plots: inline SVG on a fixed 0–1 axis, the bound drawn where 0–1 puts it
    plots = re.findall(r'<svg class="plot" viewBox="0 0 (\d+) (\d+)"[^>]*data-ymin="0" data-ymax="1">(.*?)</svg>', page, re.S)
    assert len(plots) == 1 + 5 and page.count('<svg class="plot"') == 6
    for w, h, body in plots:
        ticks = dict((lab, float(y)) for y, lab in re.findall(r'<text class="ytick" x="[\d.]+" y="([\d.]+)"[^>]*>([\d.]+)</text>', body))
        assert set(ticks) == {"0", "0.25", "0.5", "0.75", "1"} and ticks["0"] > ticks["1"]
        for y, v in re.findall(r'<line class="bound"[^>]* y1="([\d.]+)"[^>]*data-value="([\d.]+)"', body):
            top, bottom = ticks["1"] - 3, ticks["0"] - 3
            assert float(y) == pytest.approx(top + (1 - float(v)) * (bottom - top), abs=0.15)
    # 5. Worst frames: spread over the take, never neighbours
    for art in re.findall(r'<article class="take.*?</article>', page, re.S):
        frames = [int(f) for f in re.findall(r'alt="frame (\d+) of take', art)]
        assert len(frames) == len(set(frames)) and all(b - a >= N // 6 for a, b in zip(frames, frames[1:]))
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium; CI installs it)")
    flags = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'prof'}",
             "--enable-logging=stderr", "--v=0", "--window-size=1280,2400", "--hide-scrollbars"]
    dom = subprocess.run(flags + ["--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for sid in ("summary", "episodes", "week", "shot-d1-morning", "shot-d1-evening", "shot-d2-morning", "shot-d2-evening"):
        assert f'id="{sid}"' in dom.stdout
    # the worst frames of d2-evening are among the swapped 6-9 (which one is lowest moved by ~0.003 once tracked
    # scores are re-verified from scratch)
    assert dom.stdout.count('class="thumbs"') == 5 and any(f"#{i} · " in dom.stdout for i in range(6, 10))
    console = [l for l in dom.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert console == [], console
    shot = subprocess.run(flags + [f"--screenshot={tmp_path / 'shot.png'}", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and (tmp_path / "shot.png").stat().st_size > 20_000
    shutil.copy(tmp_path / "shot.png", "/tmp/report_screenshot.png") if shutil.os.access("/tmp", shutil.os.W_OK) else None


def test_html_report_escapes_hostile_ids_and_prompts(week, tmp_path):
    """Text from a spec or the registry is data: a shot id or prompt holding markup stays text."""
    from storyengine.report import build_report
    from storyengine.report_html import write_html

    spec = week.episodes / "evil.yaml"
    spec.write_text(
        "series: evil\ntitle: \"<img src=x onerror=alert(1)>\"\nbackend: motion\nepisodes:\n"
        "  - id: e1\n    title: \"</h3><script>alert(2)</script>\"\n    shots:\n"
        "      - id: calm\n        still: s.png\n        prompt: '\"><script>alert(3)</script>'\n")
    broken = week.renders / "evil" / "takes" / "broken.mp4"  # a damaged file: numbers shown, no pictures
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    reg = Registry.open(week)
    run = reg.start_run("evil", str(spec), "test", {})
    bad = 'x"><b onmouseover=alert(4)>'
    for shot in ("calm", bad):
        reg.record_take({"run_id": run, "series": "evil", "episode_id": "e1", "shot_id": shot, "take": 1, "seed": 1,
                         "backend": "test", "path": "renders/evil/takes/broken.mp4", "num_frames": 8, "fps": 8,
                         "mode": "full", "decision": "reject", "reason": "<i>why</i> & because", "keep_start": 0,
                         "keep_end": 0}, [], [])
    reg.finish_run(run)
    page = write_html(reg, build_report(reg, "evil"), tmp_path / "evil.html").read_text()
    reg.close()
    assert "<script" not in page and "<img src=x" not in page and "<b onmouseover" not in page and "<i>why" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'id="shot-x&#34;&gt;&lt;b onmouseover=alert(4)&gt;"' in page and "&lt;i&gt;why&lt;/i&gt; &amp; because" in page
    assert "0 of 2 shots accepted" in _text(page)
    # the page sits outside the workspace: its links climb out of tmp_path and land on the take
    srcs = set(re.findall(r'<video [^>]*src="([^"]+)"', page))
    assert len(srcs) == 1 and (tmp_path / srcs.pop()).resolve() == broken.resolve()


def test_worst_frames_are_spread_over_the_take():
    from storyengine.report_html import worst_frames

    sims = [0.9] * 48
    sims[10:14] = [0.5, 0.49, 0.5, 0.51]  # one dip: neighbouring frames are near-identical
    sims[30], sims[44] = 0.6, 0.7
    frames = [{"frame": i, "similarity": s} for i, s in enumerate(sims)] + [{"frame": 48, "similarity": None}]
    assert [f["frame"] for f in worst_frames(frames, 49, 3)] == [11, 30, 44]
    assert [f["frame"] for f in worst_frames(frames, 49, 1)] == [11]
    assert worst_frames([], 10, 3) == []


def test_report_open_writes_the_page_and_opens_it(week, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    r = CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--open"])
    assert r.exit_code == 0, r.output
    page = week.renders / "week" / "report.html"
    assert opened == [page.resolve().as_uri()] and "shots accepted" in page.read_text()
# ------------------------------------------------------------------ tables at any width, and piped
def _run_at(args, columns):
    """Run the CLI as in a terminal ``columns`` wide (Rich's TTY_COMPATIBLE), or piped (columns None)."""
    env = {"COLUMNS": str(columns or 80), "NO_COLOR": "1", "TTY_COMPATIBLE": "1" if columns else "0"}
    r = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert r.exit_code in (0, 1, 2, 3), (args, r.output)  # check: 1 trim, 2 reject; report: 3 under --fail-under
    return re.sub(r"\x1b\[[0-9;]*m", "", r.stdout) if columns else r.stdout


def _spec_for_plan(ws):
    import yaml
    from PIL import Image

    still = ws.episodes / "stills" / "a-rather-long-still-name-for-the-first-morning-shot.png"
    still.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (320, 180), (90, 100, 120)).save(still)
    spec = {"series": "week-plan", "width": 320, "height": 180, "episodes": [
        {"id": f"day-{d}", "shots": [{"id": f"d{d}-{t}", "still": f"stills/{still.name}", "characters": ["mara"],
                                      "duration": 1.0} for t in ("morning", "evening")]} for d in (1, 2)]}
    p = ws.episodes / "week-plan.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def _whole_values(week):
    """Every number, id and path the tables show, taken from the commands' own --json."""
    run = lambda *a: json.loads(CliRunner().invoke(app, [str(x) for x in a]).stdout)
    rep = run("report", "week", "-w", week.root, "--json")
    f = lambda v: "—" if v is None else f"{v:.3f}"
    report = set()
    for ep in rep["episodes"]:
        report.add(ep["episode"])
        for sh in ep["shots"]:
            report |= {sh["shot"], sh["verdict"], str(sh["takes"])}
            for c in sh["characters"]:
                report |= {c["character"], str(c["frames_scored"]), f(c["mean"]), f(c["min"]), f(c["bound"])}
    for c in rep["characters"]:
        report |= {c["character"], f(c["mean"]), f(c["worst_episode_mean"]), f(c["min_episode_to_episode"])}
        report |= {f(e["mean"]) for e in c["episodes"]}
    takes = {v for t in run("takes", "d2-evening", "-w", week.root, "--json")
             for v in (t["path"], str(t["seed"]), t["decision"], f"{t['score']:.3f}")}
    show = run("character", "show", "mara", "-w", week.root, "--json")
    character = {v for p in show["photos"] for v in (p["path"], p["source"], "sha256:" + p["sha256"], f"{p['width']}x{p['height']}")}
    character |= {v for s in show["identity"] for v in (s["encoder"], s["encoder_version"], f"{s['max_distance']:.3f}",
                                                        f"{s['bound']:.3f}")}
    spec = _spec_for_plan(week)
    plans = run("plan", spec, "-w", week.root, "--json")
    plan = {v for p in plans for v in (p["episode_id"], p["shot_id"], str(p["seed"]), str(p["num_frames"]),
                                       Path(p["still"]).name)}
    dry = run("render", spec, "-w", week.root, "--dry-run", "--json")
    dry_run = {v for r in dry["shots"] for v in (r["episode"], r["shot"], r["action"])}
    clip = week.renders / "week" / "takes" / "d2-evening.mp4"
    chk = run("check", clip, "-c", "mara", "-w", week.root, "--json")
    check = {chk["verdict"]} | {v for s in chk["summary"] for v in (
        s["handle"], str(s["frames_scored"]), str(s["frames_drifted"]), f(s["mean"]), f(s["min"]), f(s["bound"]))}
    return {("report", "week"): report, ("takes", "d2-evening"): takes, ("character", "show", "mara"): character,
            ("character", "list"): {"mara", "Mara", "person", str(len(show["photos"]))},
            ("plan", spec): plan, ("render", spec, "--dry-run"): dry_run, ("check", clip, "-c", "mara"): check}


@pytest.fixture(scope="module")
def whole_values(week):
    return _whole_values(week)


@pytest.mark.parametrize("columns", [60, 80, 200, None], ids=["60", "80", "200", "piped"])
def test_tables_never_cut_a_number_id_or_path(week, whole_values, columns):
    for args, values in whole_values.items():
        text = _run_at([*args, "-w", week.root], columns)
        # a terminal shows a sha256 by its first 12 digits (as git does), a pipe the whole digest
        values = {(v[7:] if columns is None else v[7:19]) if v.startswith("sha256:") else v for v in values}
        whole = lambda v: re.search(rf"(?<![\w./-]){re.escape(v)}(?![\w/-])", text)  # a token, not part of one
        missing = sorted(v for v in values if not whole(v))
        assert not missing, (args, columns, missing, text)
        assert "…" not in text, (args, columns, text)
        if args[0] == "check" and columns:
            assert str(args[1]) in text  # the title names the clip, whole
        if columns is None:  # piped: tab-separated, no colour, no padding to a width
            assert "\t" in text and "\x1b[" not in text and "─" not in text, (args, text)
            continue
        for line in text.splitlines():  # a line may pass the edge only to keep a path whole
            assert len(line) <= columns or any(len(tok) > columns // 2 for tok in line.split()), (args, columns, line)


def test_report_piped_rows_hold_every_column(week):
    rep = json.loads(CliRunner().invoke(app, ["report", "week", "-w", str(week.root), "--json"]).stdout)
    rows = [line.split("\t") for line in _run_at(["report", "week", "-w", week.root], None).splitlines()]
    header = rows[0]
    assert header == ["episode", "shot", "character", "frames", "mean", "min", "p5", "bound", "subj.", "flicker",
                      "takes", "verdict", "reason"]
    by_shot = {r[1]: dict(zip(header, r)) for r in rows[1:] if len(r) == len(header) and r[1]}
    for ep in rep["episodes"]:
        for sh in ep["shots"]:
            row = by_shot[sh["shot"]]
            c = sh["characters"][0]
            assert (row["episode"], row["character"], row["frames"], row["mean"], row["verdict"], row["reason"]) == \
                (ep["episode"], c["character"], str(c["frames_scored"]), f"{c['mean']:.3f}", sh["verdict"], sh["reason"])


def test_narrow_terminals_choose_narrower_layouts(week):
    """The report is a full table at 200 columns; at 80 the reason column goes (reasons follow the table); at 60
    the series table becomes one table per character."""
    wide = _run_at(["report", "week", "-w", week.root], 200)
    narrow = _run_at(["report", "week", "-w", week.root], 80)
    header = next(line for line in wide.splitlines() if line.startswith("shot "))
    assert header.split() == ["shot", "character", "frames", "mean", "min", "p5", "bound", "subj.", "flicker", "takes",
                              "verdict", "reason"]
    assert "characters across the series" in wide and "  d2-evening: reject" not in wide
    assert "  d2-evening: reject — " in narrow and "characters across the series" in narrow
    narrowest = _run_at(["report", "week", "-w", week.root], 60)
    assert "mara (dlib-face) across week" in narrowest and "characters across the series" not in narrowest
