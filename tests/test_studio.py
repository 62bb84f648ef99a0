"""The studio over HTTP, in process: Range requests, path escapes, uploads, CSRF, origin, token, renders."""

from __future__ import annotations

import io
import json
import re
import time

import numpy as np
import pytest
from conftest import save

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from storyengine.registry import Registry  # noqa: E402
from storyengine.settings import Settings  # noqa: E402
from storyengine.studio import create_app  # noqa: E402
from storyengine.workspace import Workspace  # noqa: E402

BASE = "http://127.0.0.1:8765"
SPEC = ("# the studio's test series\nseries: s\nwidth: 160\nheight: 96\nfps: 8\nepisodes:\n"
        "  - id: e1\n    title_duration: 0\n    transition: {type: cut}\n    shots:\n"
        "      - id: a\n        still: still.png\n        duration: 1\n        prompt: slow push in  # keep this comment\n"
        "    # a comment after the last shot\n"
        "  - id: e2\n    title_duration: 0\n    shots:\n"
        "      - id: c\n        still: still.png\n        duration: 1\n")


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace.at(tmp_path / "ws").ensure()
    rng = np.random.default_rng(0)
    save(ws.episodes / "still.png", rng.integers(0, 255, (96, 160, 3), dtype=np.uint8))
    (ws.episodes / "s.yaml").write_text(SPEC)
    return ws


def client(ws, **kw) -> TestClient:
    app = create_app(ws.root, settings=Settings(sign=False, max_takes=1), **kw)
    return TestClient(app, base_url=kw.get("base_url", BASE) if "base_url" in kw else BASE)


def csrf_of(c: TestClient, path: str = "/characters") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', c.get(path).text).group(1)


def page(r) -> str:
    """The response's text with HTML entities decoded (messages quote values)."""
    import html

    return html.unescape(r.text)


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def registry_state(ws) -> tuple:
    reg = Registry.open(ws)
    try:
        return (reg.db["characters"].count, reg.db["photos"].count, reg.db["takes"].count,
                sorted(p.name for p in ws.characters.rglob("*") if p.is_file()))
    finally:
        reg.close()


def render(c: TestClient, token: str, **form) -> dict:
    r = c.post("/series/s.yaml/render", data={"csrf": token, **form}, headers={"Origin": BASE, "Accept": "application/json"})
    assert r.status_code == 200, r.text
    job = r.json()
    with c.stream("GET", job["events"]) as s:
        body = "".join(s.iter_text())
    events = [json.loads(m) for m in re.findall(r"^data: (.*)$", body, re.M)]
    return {"job": job, "events": events}


def test_render_streams_progress_and_serves_the_episode_with_ranges(ws):
    c = client(ws)
    tok = csrf_of(c)
    out = render(c, tok)
    kinds = [e["kind"] for e in out["events"]]
    assert kinds[0] == "started" and kinds[-1] == "end" and out["events"][-1]["state"] == "done", out["events"][-3:]
    assert [e["shot"] for e in out["events"] if e["kind"] == "shot"] == ["a", "c"]
    assert [e["episode"] for e in out["events"] if e["kind"] == "episode"] == ["e1", "e2"]
    again = render(c, tok)  # the lock is free as soon as `end` is seen; everything comes from the cache
    assert [(e["shot"], e["generated"]) for e in again["events"] if e["kind"] == "shot"] == [("a", 0), ("c", 0)]
    assert [e["reused"] for e in again["events"] if e["kind"] == "episode"] == [True, True]
    frames = [e for e in out["events"] if e["kind"] == "progress" and e["key"].startswith("shot:") and e.get("completed")]
    assert frames and max(e["completed"] for e in frames) == 8  # 1 s at 8 fps
    ep = ws.renders / "s" / "e1.mp4"
    size = ep.stat().st_size
    r = c.get("/files/renders/s/e1.mp4", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.headers["content-type"] == "video/mp4"
    assert r.headers["content-range"] == f"bytes 0-99/{size}" and r.headers["accept-ranges"] == "bytes"
    assert r.content == ep.read_bytes()[:100]
    r = c.get("/files/renders/s/e1.mp4", headers={"Range": f"bytes={size - 10}-"})
    assert r.status_code == 206 and r.content == ep.read_bytes()[-10:]
    assert c.get("/files/renders/s/e1.mp4", headers={"Range": f"bytes={size + 5}-"}).status_code == 416
    full = c.get("/files/renders/s/e1.mp4")
    assert full.status_code == 200 and len(full.content) == size
    # the episode page: player with a chapters track whose cue is the shot, the C2PA state
    page = c.get("/series/s.yaml/episodes/e1").text
    assert 'kind="chapters"' in page and "/files/renders/s/e1.mp4" in page and 'id="c2pa"' in page
    vtt = c.get("/series/s.yaml/episodes/e1/chapters.vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT") and "00:00:00.000 --> 00:00:01.000\na" in vtt.text
    # takes page and report page link the same files
    shot = c.get("/series/s.yaml/shots/a").text
    assert "take 1" in shot and "/files/renders/s/" in shot
    rep = c.get("/series/s.yaml/report").text
    assert 'id="shot-a"' in rep and 'src="/files/renders/s/e1.mp4"' in rep


def test_second_render_is_told_who_holds_the_lock(ws):
    from storyengine.lock import WorkspaceLock

    c = client(ws)
    tok = csrf_of(c)
    before = registry_state(ws)
    with WorkspaceLock(ws):
        r = c.post("/series/s.yaml/render", data={"csrf": tok}, headers={"Origin": BASE})
    assert r.status_code == 409 and "is being rendered by pid" in page(r) and "--wait" not in page(r)
    assert registry_state(ws) == before and not (ws.renders / "s").exists()


def test_files_refuse_escapes_symlinks_and_hidden_files(ws, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    (ws.renders / "link.png").symlink_to(outside)
    (ws.renders / "s").mkdir()
    (ws.renders / "s" / "ok.png").write_bytes(outside.read_bytes())
    c = client(ws)
    assert c.get("/files/renders/s/ok.png").status_code == 200
    for bad in ("/files/renders/link.png", "/files/../secret.png", "/files/renders/%2e%2e/%2e%2e/secret.png",
                "/files/renders/.lock", "/files/characters/registry.db", "/files//etc/passwd",
                "/files/renders/s/..%2f..%2f..%2fsecret.png"):
        r = c.get(bad)
        assert r.status_code == 404, (bad, r.status_code)
        assert b"\x89PNG" not in r.content


def test_csrf_origin_and_method_are_checked_before_anything_changes(ws, astronaut):
    c = client(ws)
    tok = csrf_of(c)
    files = [("photos", ("p.png", png_bytes(astronaut), "image/png"))]
    before = registry_state(ws)
    r = c.post("/characters", data={"csrf": "wrong", "handle": "mara"}, files=files, headers={"Origin": BASE})
    assert r.status_code == 400 and "CSRF token" in page(r)
    r = c.post("/characters", data={"csrf": tok, "handle": "mara"}, files=files, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in page(r)
    r = c.post("/characters", data={"csrf": tok, "handle": "mara"}, files=files)  # no Origin, no Referer
    assert r.status_code == 403
    assert c.get("/characters/mara/remove").status_code == 405  # no state change over GET
    assert c.request("DELETE", "/characters").status_code == 405
    r = c.post("/series/s.yaml/render", data={"csrf": "nope"}, headers={"Origin": BASE})
    assert r.status_code == 400 and not (ws.renders / "s").exists()
    assert registry_state(ws) == before
    # the same request from the studio's own page goes through
    r = c.post("/characters", data={"csrf": tok, "handle": "mara", "consent": "NASA public domain"}, files=files,
               headers={"Origin": BASE})
    assert r.status_code == 200 and "1 photo(s) registered" in page(r)
    assert registry_state(ws)[:2] == (1, 1)


def test_uploads_are_checked_before_anything_is_written(ws, astronaut):
    c = client(ws)
    tok = csrf_of(c)
    before = registry_state(ws)
    h = {"Origin": BASE}
    r = c.post("/characters", data={"csrf": tok, "handle": "mara"},
               files=[("photos", ("notes.png", b"this is not a picture", "image/png"))], headers=h)
    assert r.status_code == 400 and "notes.png: not an image" in page(r)
    big = b"\x89PNG" + b"0" * (16 * 1024 * 1024)
    r = c.post("/characters", data={"csrf": tok, "handle": "mara"}, files=[("photos", ("big.png", big, "image/png"))], headers=h)
    assert r.status_code == 400 and "too large" in page(r)
    many = [("photos", (f"p{i}.png", png_bytes(astronaut), "image/png")) for i in range(8)]
    r = c.post("/characters", data={"csrf": tok, "handle": "mara"}, files=many, headers=h)
    assert r.status_code == 400 and "at most 7" in page(r)
    r = c.post("/characters", data={"csrf": tok, "handle": "mara"}, headers={**h, "Content-Length": str(200 * 1024 * 1024)},
               content=b"x")
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted as it arrives and cut off past the limit
        yield b"--b\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"x.png\"\r\n\r\n"
        for _ in range(200):
            yield b"0" * (1024 * 1024)

    r = c.post("/characters", headers={**h, "Content-Type": "multipart/form-data; boundary=b"}, content=chunks())
    assert r.status_code == 413 and "upload too large" in page(r)
    # a real photo refused by the registry's own gate: the verdict names the uploaded file, nothing stored
    flat = np.full((200, 200, 3), 128, np.uint8)
    r = c.post("/characters", data={"csrf": tok, "handle": "mara"},
               files=[("photos", ("wall.png", png_bytes(flat), "image/png"))], headers=h)
    assert r.status_code == 400 and "wall.png: no face found" in page(r) and "storyengine-upload" not in page(r)
    assert registry_state(ws) == before


def test_token_required_on_a_non_local_bind(ws):
    from storyengine.errors import StoryEngineError

    with pytest.raises(StoryEngineError, match="pass --token"):
        create_app(ws.root, host="0.0.0.0")
    base = "http://192.168.1.5:8765"
    c = TestClient(create_app(ws.root, host="192.168.1.5", token="s3cret"), base_url=base, follow_redirects=False)
    assert c.get("/").status_code == 401
    assert c.get("/files/episodes/still.png").status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    r = c.get("/characters?token=s3cret")
    assert r.status_code == 303 and r.headers["location"] == "/characters" and "HttpOnly" in r.headers["set-cookie"]
    assert c.get("/characters").status_code == 200  # the cookie now carries it
    # a raw path `//evil.example/x` redirects within the studio (no open redirect)
    import asyncio

    sent = []

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": "GET", "path": "//evil.example/x", "query_string": b"token=s3cret",
             "headers": [(b"host", b"192.168.1.5:8765")]}
    asyncio.run(c.app(scope, None, send))
    assert sent[0]["status"] == 303 and dict(sent[0]["headers"])[b"location"] == b"/evil.example/x"
    assert c.get("/", headers={"Host": "studio.lan:8765"}).status_code == 200  # any name of the machine, with the token
    # a local studio refuses a Host header naming another site (DNS rebinding)
    local = client(ws)
    assert local.get("/", headers={"Host": "evil.example:8765"}).status_code == 421


def test_add_shot_keeps_comments_and_validates(ws):
    c = client(ws)
    tok = csrf_of(c, "/series/s.yaml")
    still = png_bytes(np.random.default_rng(1).integers(0, 255, (96, 160, 3), dtype=np.uint8))
    h = {"Origin": BASE}
    r = c.post("/series/s.yaml/shots", data={"csrf": tok, "episode": "e1", "shot": "b", "prompt": "she turns: \"hello\"",
                                              "duration": "1"}, files={"still": ("b.png", still, "image/png")}, headers=h)
    assert r.status_code == 200 and "shot b added to e1" in page(r)
    text = (ws.episodes / "s.yaml").read_text()
    assert text.startswith(SPEC.split("    # a comment")[0])  # everything before is untouched
    assert "# keep this comment" in text and "    # a comment after the last shot\n" in text
    from storyengine.planner import load_series

    spec = load_series(ws.episodes / "s.yaml")
    b = spec.episodes[0].shots[1]
    assert (b.id, b.still, b.prompt, b.duration) == ("b", "stills/b.png", 'she turns: "hello"', 1.0)
    assert (ws.episodes / "stills" / "b.png").read_bytes() == still
    # a duplicate id: the planner's error, the file unchanged, no still left behind
    r = c.post("/series/s.yaml/shots", data={"csrf": tok, "episode": "e2", "shot": "c", "duration": "1"},
               files={"still": ("c.png", still, "image/png")}, headers=h)
    assert r.status_code == 400 and "duplicate shot id 'c'" in page(r)
    assert (ws.episodes / "s.yaml").read_text() == text and not (ws.episodes / "stills" / "c.png").exists()
    # an unknown character: line-precise error naming the real spec file
    r = c.post("/series/s.yaml/shots", data={"csrf": tok, "episode": "e2", "shot": "d", "duration": "1",
                                              "characters": "nobody"}, files={"still": ("d.png", still, "image/png")}, headers=h)
    assert r.status_code == 400 and "nobody" in page(r)
    assert (ws.episodes / "s.yaml").read_text() == text and not (ws.episodes / "stills" / "d.png").exists()
    assert not [p for p in ws.episodes.iterdir() if p.name.startswith(".")]


def test_errors_are_pages_without_tracebacks(ws):
    c = client(ws)
    r = c.get("/series/nope.yaml")
    assert r.status_code == 404 and "no series spec named" in page(r) and "Traceback" not in page(r)
    assert c.get("/no/such/page").status_code == 404
    (ws.episodes / "bad.yaml").write_text("series: s\nfps: many\nepisodes: []\n")
    r = c.get("/series/bad.yaml")
    assert r.status_code == 200 and "bad.yaml:2: fps" in page(r)
    home = page(c.get("/"))
    assert "bad.yaml" in home and "does not validate" in home and "2 episodes, 2 shots" in home


def test_characters_add_remove_rename_through_the_page(ws, astronaut):
    c = client(ws)
    tok = csrf_of(c)
    h = {"Origin": BASE}
    a = astronaut
    relit = np.clip(a[10:290, 30:370].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
    r = c.post("/characters", data={"csrf": tok, "handle": "eileen", "licence": "public domain"}, headers=h,
               files=[("photos", ("front.png", png_bytes(a), "image/png")), ("photos", ("front-again.png", png_bytes(a), "image/png"))])
    assert r.status_code == 200 and "1 photo(s) registered, 1 refused" in page(r)
    assert "front-again.png: duplicate of" in page(r)  # the duplicate gate's verdict, under the uploaded name
    r = c.post("/characters/eileen/photos", data={"csrf": tok}, headers=h,
               files=[("photos", ("mirror.png", png_bytes(a[:, ::-1].copy()), "image/png")),
                      ("photos", ("relit.png", png_bytes(relit), "image/png"))])
    assert r.status_code == 200 and "eileen: 2 photo(s) added" in page(r)
    reg = Registry.open(ws)
    try:
        photos = reg.photos("eileen")
        assert [p["source"] for p in photos] == ["front.png", "mirror.png", "relit.png"]
        assert reg.identity("eileen")[0]["n"] == 3
    finally:
        reg.close()
    r = c.post("/characters/eileen/remove", data={"csrf": tok, "photo": str(photos[1]["id"])}, headers=h)
    assert r.status_code == 200 and "photo mirror.png removed" in page(r)
    r = c.post("/characters/eileen/rename", data={"csrf": tok, "new": "Bad Handle"}, headers=h)
    assert r.status_code == 400 and "is not allowed" in page(r)
    r = c.post("/characters/eileen/rename", data={"csrf": tok, "new": "collins"}, headers=h)
    assert r.status_code == 200 and "eileen is now collins" in page(r)
    reg = Registry.open(ws)
    try:
        assert [c["handle"] for c in reg.characters()] == ["collins"]
        assert [p["source"] for p in reg.photos("collins")] == ["front.png", "relit.png"]
        assert reg.identity("collins")[0]["n"] == 2
        assert all((ws.root / p["path"]).is_file() for p in reg.photos("collins"))
    finally:
        reg.close()
    # the photos are served from the workspace with their image type
    r = c.get("/files/" + Registry.open(ws).photos("collins")[0]["path"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_take_decisions_follow_the_install(ws, monkeypatch):
    from storyengine.studio import app as studio_app

    c = client(ws)
    tok = csrf_of(c)
    render(c, tok, episode="e2")
    shot = c.get("/series/s.yaml/shots/c").text
    if studio_app.decisions_module() is None:
        assert 'id="decisions-note"' in shot and "disabled" in shot
        before = registry_state(ws)
        r = c.post("/series/s.yaml/shots/c/decide", data={"csrf": tok, "take": "1", "action": "use"}, headers={"Origin": BASE})
        assert r.status_code == 400 and "not available" in page(r) and registry_state(ws) == before
    calls = []

    class FakeDecisions:  # the recorder's contract: record(reg, shot, take, action, reason=, series=)
        @staticmethod
        def record(reg, shot, take, action, reason="", series=None):
            calls.append((shot, take, action, reason, series))

    monkeypatch.setattr(studio_app, "decisions_module", lambda: FakeDecisions)
    r = c.post("/series/s.yaml/shots/c/decide", data={"csrf": tok, "take": "1", "action": "bogus"}, headers={"Origin": BASE})
    assert r.status_code == 400 and "'bogus' is not one of use, accept, reject" in page(r) and calls == []
    r = c.post("/series/s.yaml/shots/c/decide", data={"csrf": tok, "take": "1", "action": "reject", "reason": "too dark"},
               headers={"Origin": BASE})
    assert r.status_code == 200 and "take 1 of c: reject recorded (too dark)" in page(r)
    assert calls == [("c", 1, "reject", "too dark", "s")]


def test_studio_command_is_registered():
    from typer.testing import CliRunner

    from storyengine.cli import app

    out = CliRunner().invoke(app, ["studio", "--help"])
    assert out.exit_code == 0 and "--token" in out.output and "--port" in out.output


def test_several_faces_show_a_face_picker_and_face_n_registers_one(ws, astronaut, hopper):
    from PIL import Image

    h = 300
    right = np.asarray(Image.fromarray(hopper).resize((int(hopper.shape[1] * h / hopper.shape[0]), h)))
    both = np.concatenate([astronaut, right], axis=1)
    c = client(ws)
    tok = csrf_of(c)
    r = c.post("/characters", data={"csrf": tok, "handle": "pair"}, headers={"Origin": BASE},
               files=[("photos", ("both.png", png_bytes(both), "image/png"))])
    text = page(r)
    assert r.status_code == 400 and "both.png: 2 faces and no dominant one; set Face to N below" in text
    assert text.count('alt="face ') == 2 and "Face 0" in text and "Face 1" in text
    assert registry_state(ws)[:2] == (0, 0)
    r = c.post("/characters", data={"csrf": tok, "handle": "grace", "face": "1"}, headers={"Origin": BASE},
               files=[("photos", ("both.png", png_bytes(both), "image/png"))])
    assert r.status_code == 200 and "grace: 1 photo(s) registered" in page(r)
    reg = Registry.open(ws)
    try:
        box = json.loads(next(iter(reg.db.query("select box from embeddings where handle = 'grace'")))["box"])
        assert box[0] >= astronaut.shape[1]  # the right-hand face: Grace Hopper's
    finally:
        reg.close()


def test_refused_shot_upload_and_invalid_render_change_nothing(ws):
    c = client(ws)
    tok = csrf_of(c, "/series/s.yaml")
    h = {"Origin": BASE}
    spec = (ws.episodes / "s.yaml").read_text()
    r = c.post("/series/s.yaml/shots", data={"csrf": tok, "episode": "e1", "shot": "x"},
               files={"still": ("x.png", b"GIF89a not really", "image/png")}, headers=h)
    assert r.status_code == 400 and "x.png: not an image" in page(r)
    r = c.post("/series/s.yaml/shots", data={"csrf": tok, "episode": "e9", "shot": "x"},
               files={"still": ("x.png", png_bytes(np.zeros((96, 160, 3), np.uint8)), "image/png")}, headers=h)
    assert r.status_code == 400 and "no episode with id 'e9'" in page(r)
    assert 'name="shot" value="x"' in r.text  # the form keeps what was typed
    assert (ws.episodes / "s.yaml").read_text() == spec and not (ws.episodes / "stills").exists()
    # a spec naming an unregistered character: the planner's error with the YAML line, nothing rendered, lock free
    (ws.episodes / "s.yaml").write_text(spec.replace("        prompt: slow push in", "        characters: [ghost]\n        prompt: slow push in"))
    r = c.post("/series/s.yaml/render", data={"csrf": tok}, headers=h)
    assert r.status_code == 400 and "ghost" in page(r) and "s.yaml" in page(r)
    assert not (ws.renders / "s").exists() and registry_state(ws)[2] == 0
    from storyengine.lock import WorkspaceLock

    with WorkspaceLock(ws):  # released: a CLI render could start now
        pass


def test_use_take_two_through_the_page_and_the_next_render_honours_it(ws):
    from storyengine.studio.app import decisions_module

    if decisions_module() is None:
        pytest.skip("storyengine.decisions is not in this install")
    (ws.episodes / "s.yaml").write_text(SPEC.replace("        prompt: slow push in  # keep this comment\n",
                                                     "        prompt: slow push in\n        takes: 2\n        moods: [warm, distant]\n"))
    c = client(ws)
    tok = csrf_of(c)
    first = render(c, tok, episode="e1")
    a = next(e for e in first["events"] if e["kind"] == "shot" and e["shot"] == "a")
    assert a["takes"] == 2 and a["take"] == 1
    h = {"Origin": BASE}
    r = c.post("/series/s.yaml/shots/a/decide", data={"csrf": tok, "take": "9", "action": "use"}, headers=h)
    assert r.status_code == 400 and "take 9 of shot 'a' was never rendered" in page(r)
    r = c.post("/series/s.yaml/shots/a/decide", data={"csrf": tok, "take": "2", "action": "use", "reason": "the distant one"},
               headers=h)
    assert r.status_code == 200 and "take 2 of a: use recorded (the distant one)" in page(r)
    assert "decided: use — the distant one" in re.sub(r"<[^>]+>", "", page(r))
    reg = Registry.open(ws)
    try:
        rows = list(reg.db.query("select shot_id, take, action, reason from take_decisions"))
    finally:
        reg.close()
    assert rows == [{"shot_id": "a", "take": 2, "action": "use", "reason": "the distant one"}]
    again = render(c, tok, episode="e1")  # the same render the CLI runs applies it, from the take cache
    a2 = next(e for e in again["events"] if e["kind"] == "shot" and e["shot"] == "a")
    assert a2["take"] == 2 and a2["generated"] == 0
