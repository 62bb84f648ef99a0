"""The creator's studio: a local web app over one workspace (same registry, same specs, same RenderRun).

Pages are server-rendered Jinja2 templates (``studio/templates/studio/``, extending the report's
``report/base.html.j2``); ``static/studio.js`` is a small hand-written script for the render progress
(server-sent events) and the episode player's chapters. Every route reads or writes through the
same functions the CLI calls: ``register.register_character``, ``characters.add_photos`` /
``remove_photo`` / ``rename_character``, ``planner.load_series`` / ``plan_series``, ``RenderRun``
(in :mod:`.jobs`), ``report_html.page_data`` and ``provenance.verify``. :mod:`.security` guards
every request.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import re
import secrets
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import StoryEngineError, WorkspaceBusy
from ..registry import Registry
from ..settings import Settings
from ..workspace import Workspace, check_handle, open_temp_beside
from .security import BodyTooLarge, Gate, check_csrf

HERE = Path(__file__).parent
MAX_PHOTOS = 7
MAX_FILE = 15 * 1024 * 1024  # bytes per uploaded image
MAX_BODY = MAX_PHOTOS * MAX_FILE + 256 * 1024
MAX_PIXELS = 40_000_000
SERVED = {".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
          ".webp": "image/webp", ".json": "application/json", ".vtt": "text/vtt"}
SPEC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}")
ACTIONS = ("use", "accept", "reject")


class Refused(StoryEngineError):
    """A request the studio turns down before touching anything (bad field, bad upload)."""


def decisions_module():
    """storyengine.decisions (take decisions, issue 15) when this install has it, else None."""
    try:
        from .. import decisions  # type: ignore[attr-defined]
    except ImportError:
        return None
    return decisions if hasattr(decisions, "record") else None


# 1. Templates -----------------------------------------------------------------------------------


def environment():
    """The report's Jinja2 environment with the studio's templates in front."""
    import jinja2

    from ..report_html import environment as report_env

    env = report_env()
    env.loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(HERE / "templates")), env.loader])
    return env


# 2. Uploads: checked as images in memory before anything is written -----------------------------


def _safe_name(name: str) -> str:
    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name or "photo").name).strip("._") or "photo")[:80]


async def read_image(upload: Any, what: str) -> tuple[str, bytes, str]:
    """(file name, bytes, suffix) of an uploaded image, or Refused naming the file and why."""
    name = getattr(upload, "filename", None) or what
    data = await upload.read()
    if len(data) > MAX_FILE:
        raise Refused(f"{name}: too large: {len(data)} bytes (at most {MAX_FILE})")
    if not data:
        raise Refused(f"{name}: empty file")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise Refused(f"{name}: {w}x{h} is over {MAX_PIXELS} pixels")
            im.verify()
    except Refused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise Refused(f"{name}: not an image ({e.__class__.__name__}: cannot read it as PNG, JPEG or WebP)") from None
    suffix = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}.get(fmt or "")
    if suffix is None:
        raise Refused(f"{name}: {fmt} images are not accepted (PNG, JPEG or WebP)")
    return name, data, suffix


# 3. The studio ----------------------------------------------------------------------------------


class Studio:
    """State shared by the routes: the workspace, tokens, settings and the current render."""

    def __init__(self, root: Path, *, settings: Settings | None = None, backend_factory: Callable[[], Any] | None = None) -> None:
        self.ws = Workspace.at(root).ensure()
        self.csrf = secrets.token_urlsafe(24)
        self.settings_override = settings
        self.backend_factory = backend_factory
        self.env = environment()
        self.job = None

    def settings(self) -> Settings:
        return self.settings_override or Settings.load(self.ws.root)

    def registry(self) -> Registry:
        return Registry.open(self.ws)

    def page(self, template: str, status: int = 200, **data: Any) -> HTMLResponse:
        data.setdefault("error", None)
        data.setdefault("notice", None)
        text = self.env.get_template(f"studio/{template}").render(csrf=self.csrf, job=self.job, **data)
        return HTMLResponse(text, status_code=status)

    def href(self, path: str | Path | None) -> str | None:
        """/files/ URL of a workspace file (relative or absolute path), or None if it is not a file under the workspace."""
        if not path:
            return None
        p = Path(path)
        p = p if p.is_absolute() else self.ws.root / p
        try:
            rel = p.resolve().relative_to(self.ws.root.resolve())
        except (ValueError, OSError):
            return None
        return "/files/" + rel.as_posix() if p.is_file() else None

    def spec_path(self, name: str) -> Path:
        if not SPEC_NAME.fullmatch(name) or not name.endswith((".yaml", ".yml")):
            raise Refused(f"no series spec named {name!r}")
        p = self.ws.episodes / name
        if not p.is_file() or p.resolve().parent != self.ws.episodes.resolve():
            raise Refused(f"no series spec named {name!r} in {self.ws.episodes}")
        return p

    def specs(self) -> list[Path]:
        return sorted(p for p in self.ws.episodes.glob("*.y*ml") if p.is_file() and SPEC_NAME.fullmatch(p.name))


async def form_of(request: Request, studio: Studio):
    """The POSTed form after the CSRF check (Refused otherwise); nothing is read from disk before."""
    form = await request.form(max_files=MAX_PHOTOS + 1, max_fields=60, max_part_size=64 * 1024)
    if not check_csrf(form, studio.csrf):
        raise Refused("the form's CSRF token is missing or stale: reload the page and try again")
    return form


def _s(form: Any, key: str, default: str = "") -> str:
    v = form.get(key)
    return v.strip() if isinstance(v, str) else default


# 4. Pages ---------------------------------------------------------------------------------------


def _characters(studio: Studio, reg: Registry) -> list[dict[str, Any]]:
    out = []
    for c in reg.characters():
        photos = [{**p, "src": studio.href(p["path"])} for p in reg.photos(c["handle"])]
        ident = [{k: v for k, v in r.items() if k != "centroid"} for r in reg.identity(c["handle"])]
        out.append({**c, "photos": photos, "identity": ident})
    return out


def _all_characters(studio: Studio) -> list[dict[str, Any]]:
    reg = studio.registry()
    try:
        return _characters(studio, reg)
    finally:
        reg.close()


async def home(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    return studio.page("home.html.j2", characters=_all_characters(studio),
                       specs=await run_in_threadpool(_spec_rows, studio))


def _spec_rows(studio: Studio) -> list[dict[str, Any]]:
    """Each spec with its title and size, or the first line of why it does not load."""
    from ..planner import load_series

    rows = []
    for p in studio.specs():
        try:
            s = load_series(p)
            rows.append({"name": p.name, "title": s.title or s.series, "episodes": len(s.episodes),
                         "shots": sum(len(e.shots) for e in s.episodes), "error": None})
        except StoryEngineError as e:
            rows.append({"name": p.name, "title": p.stem, "episodes": 0, "shots": 0, "error": str(e).split("\n")[-1].strip()})
    return rows


async def characters_page(request: Request, *, error: str | None = None, verdicts: list | None = None,
                          status: int = 200, notice: str | None = None, values: dict | None = None) -> Response:
    studio: Studio = request.app.state.studio
    return studio.page("characters.html.j2", status=status, characters=_all_characters(studio), error=error,
                       verdicts=verdicts or [],
                       notice=notice, max_photos=MAX_PHOTOS, values=values or {})


# the CLI's flags in the gates' lines, as this page's fields
_FLAG_WORDS = [("pass --face N", "set Face to N below"), ("use --force to keep it", "tick Keep outliers to keep it"),
               ("--face ", "Face "), (", or pass --wait SECONDS to queue behind it", "")]


def _page_words(line: str) -> str:
    for a, b in _FLAG_WORDS:
        line = line.replace(a, b)
    return line


def _faces(path: Path, settings: Settings) -> list[dict[str, Any]]:
    """The faces found in a photo refused for having several, as numbered thumbnails (the face picker)."""
    from ..register import face_candidates
    from ..report_html import _jpeg

    try:
        cands = face_candidates(path, settings)
        from ..images import load_rgb

        rgb = load_rgb(path)
    except StoryEngineError:
        return []
    out = []
    for c in cands:
        x0, y0, x1, y1 = c["box"]
        m = (x1 - x0) // 3
        h, w = rgb.shape[:2]
        crop = np.ascontiguousarray(rgb[max(0, y0 - m):min(h, y1 + m), max(0, x0 - m):min(w, x1 + m)])
        out.append({"index": c["index"], "src": _jpeg(crop, 96), "width": c["width"]})
    return out


def _verdicts(names: list[str], temp_paths: list[Path], accepted: list[str], rejected: list[str],
              settings: Settings | None = None) -> list[dict[str, Any]]:
    """One row per uploaded photo: accepted, or the gate's line with the temp path replaced by the upload's name."""
    rows: list[dict[str, Any]] = []
    for name, tmp in zip(names, temp_paths):
        line = next((r for r in rejected if r.startswith(str(tmp))), None)
        if str(tmp) in accepted:
            rows.append({"photo": name, "ok": True, "verdict": "accepted", "faces": []})
        else:
            faces = _faces(tmp, settings) if line and "faces and no dominant one" in line and settings else []
            rows.append({"photo": name, "ok": False, "verdict": _page_words((line or "refused").replace(str(tmp), name, 1)),
                         "faces": faces})
    return rows


async def _uploaded_photos(form: Any) -> list[tuple[str, bytes, str]]:
    files = [f for f in form.getlist("photos") if not isinstance(f, str) and getattr(f, "filename", "")]
    if not files:
        raise Refused("choose 1 to 7 photos to upload")
    if len(files) > MAX_PHOTOS:
        raise Refused(f"{len(files)} photos uploaded; at most {MAX_PHOTOS} at a time")
    return [await read_image(f, f"photo {i + 1}") for i, f in enumerate(files)]


def _register_from_uploads(studio: Studio, photos: list[tuple[str, bytes, str]], call: Callable[[Registry, list[Path]], Any],
                           settings: Settings | None = None):
    """Write the checked uploads to a private temp folder (outside the workspace), then run the registry call."""
    reg = studio.registry()
    try:
        with tempfile.TemporaryDirectory(prefix="storyengine-upload-") as d:
            paths = []
            for i, (name, data, suffix) in enumerate(photos):
                # one folder per upload, so the registry keeps the creator's own file name as the photo's source
                p = Path(d) / str(i) / (Path(_safe_name(name)).stem + suffix)
                p.parent.mkdir()
                p.write_bytes(data)
                paths.append(p)
            names = [n for n, _, _ in photos]
            try:
                res = call(reg, paths)
            except StoryEngineError as e:
                msg = str(e)
                lines = [ln.strip() for ln in msg.split("\n")[1:]]
                if lines:  # "no photo was registered" with one gate line per photo
                    head = msg.split("\n")[0].rstrip(":")
                    return None, _verdicts(names, paths, [], lines, settings), f"{head}; each photo's verdict is below"
                for p, n in zip(paths, names):
                    msg = msg.replace(str(p), n)
                return None, [], msg
            return res, _verdicts(names, paths, res.accepted, res.rejected, settings), None
    finally:
        reg.close()


def _values(form: Any) -> dict[str, str]:
    """The register form's text fields as sent (shown again after a refusal; files must be chosen again)."""
    if form is None:
        return {}
    return {k: v for k in ("handle", "name", "kind", "consent", "licence", "face") if isinstance(v := form.get(k), str)}


async def register_post(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    form = None
    try:
        form = await form_of(request, studio)
        handle = check_handle(_s(form, "handle"))
        kind = _s(form, "kind", "person")
        face = _s(form, "face")
        face_i = int(face) if face.isdigit() else None
        photos = await _uploaded_photos(form)
    except (StoryEngineError, ValueError) as e:
        return await characters_page(request, error=str(e), status=400, values=_values(form))
    from ..register import register_character

    settings = studio.settings()

    def call(reg: Registry, paths: list[Path]):
        if reg.has_character(handle):
            raise Refused(f"character {handle!r} is already registered; add photos on its page")
        return register_character(reg, studio.ws, handle, paths, kind=kind, name=_s(form, "name") or None,
                                  consent=_s(form, "consent"), licence=_s(form, "licence"), face=face_i,
                                  force=form.get("force") == "on", settings=settings)

    res, verdicts, err = await run_in_threadpool(_register_from_uploads, studio, photos, call, settings)
    if err:
        return await characters_page(request, error=err, verdicts=verdicts, status=400, values=_values(form))
    return await characters_page(request, verdicts=verdicts,
                                 notice=f"{handle}: {len(res.accepted)} photo(s) registered, {len(res.rejected)} refused")


async def character_action(request: Request) -> Response:
    """POST /characters/{handle}/{action}: photos (add), remove (one photo), rename."""
    studio: Studio = request.app.state.studio
    handle, action = request.path_params["handle"], request.path_params["action"]
    try:
        form = await form_of(request, studio)
        check_handle(handle)
        from .. import characters

        if action == "photos":
            photos = await _uploaded_photos(form)
            settings = studio.settings()
            face = _s(form, "face")
            res, verdicts, err = await run_in_threadpool(
                _register_from_uploads, studio, photos,
                lambda reg, paths: characters.add_photos(reg, studio.ws, handle, paths, settings=settings,
                                                         face=int(face) if face.isdigit() else None,
                                                         force=form.get("force") == "on"), settings)
            if err:
                return await characters_page(request, error=err, verdicts=verdicts, status=400)
            return await characters_page(request, verdicts=verdicts, notice=f"{handle}: {len(res.accepted)} photo(s) added")
        reg = studio.registry()
        try:
            if action == "remove":
                pid = _s(form, "photo")
                if not pid.isdigit():
                    raise Refused(f"photo id {pid!r} is not a number")
                row = characters.remove_photo(reg, studio.ws, handle, int(pid))
                notice = f"{handle}: photo {row['source']} removed"
            elif action == "rename":
                new = check_handle(_s(form, "new"))
                characters.rename_character(reg, studio.ws, handle, new)
                notice = f"{handle} is now {new}"
            else:
                raise Refused(f"unknown action {action!r}")
        finally:
            reg.close()
    except (StoryEngineError, ValueError) as e:
        return await characters_page(request, error=str(e), status=400)
    return await characters_page(request, notice=notice)


# ---- series

def _series_view(studio: Studio, name: str) -> dict[str, Any]:
    from ..planner import load_series, plan_series

    path = studio.spec_path(name)
    view: dict[str, Any] = {"name": name, "path": str(path), "spec": None, "error": None, "plans": {}, "notes": [], "motion": {},
                            "text": path.read_text(encoding="utf-8")}
    try:
        spec = load_series(path)
    except StoryEngineError as e:
        view["error"] = str(e)
        return view
    view["spec"] = spec
    reg = studio.registry()
    try:
        plans = plan_series(spec, path, reg, studio.ws)
        view["plans"] = {p.shot_id: p for p in plans}
        view["motion"] = _motions(plans)
        view["notes"] = [n for p in plans for n in p.notes]
        rows = {r["shot_id"]: r for r in reg.db.query(
            "select shot_id, decision, max(id) as id from takes where series = ? group by shot_id", [spec.series])}
        view["rendered"] = rows
        view["episodes_done"] = {r["episode_id"]: r for r in reg.db.query(
            "select * from episodes where series = ? order by id", [spec.series])}
        view["characters"] = [c["handle"] for c in reg.characters()]
    except StoryEngineError as e:
        view["error"] = str(e)
        view.setdefault("rendered", {})
        view.setdefault("episodes_done", {})
        view["characters"] = [c["handle"] for c in reg.characters()]
    finally:
        reg.close()
    view["still"] = {s.id: studio.href(path.parent / s.still) if s.still != "previous" else None
                     for e in spec.episodes for s in e.shots}
    return view


def _motions(plans: list) -> dict[str, dict[str, Any]]:
    """What each shot's prompt is read as by its back-end (``storyengine plan``'s motion column), with its warnings."""
    from ..backends.base import VideoBackend, motion_warnings
    from ..plugins import backend_class

    out = {}
    for p in plans:
        try:
            d = getattr(backend_class(p.backend), "describe_motion", VideoBackend.describe_motion)(p)
        except StoryEngineError:
            continue
        out[p.shot_id] = {"read_as": d.get("read_as", ""), "reads_prompt": bool(d.get("reads_prompt")),
                          "warnings": motion_warnings(d)}
    return out


async def series_page(request: Request, *, error: str | None = None, notice: str | None = None, status: int = 200,
                      values: dict[str, Any] | None = None) -> Response:
    studio: Studio = request.app.state.studio
    try:
        view = await run_in_threadpool(_series_view, studio, request.path_params["name"])
    except Refused as e:
        return studio.page("error.html.j2", status=404, error=str(e))
    return studio.page("series.html.j2", status=status, v=view, error=error, spec_error=view["error"], notice=notice,
                       values=values or {})


async def add_shot(request: Request) -> Response:
    """A new shot from an uploaded still and a prompt, appended to an episode in the YAML (comments kept)."""
    studio: Studio = request.app.state.studio
    name = request.path_params["name"]
    from ..planner import load_series, plan_series
    from .specedit import insert_shot

    form = None
    try:
        form = await form_of(request, studio)
        path = studio.spec_path(name)
        ep_id, shot_id, prompt = _s(form, "episode"), _s(form, "shot"), _s(form, "prompt")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", shot_id):
            raise Refused(f"shot id {shot_id!r} must be a lowercase slug (letters, digits, - or _)")
        upload = form.get("still")
        if upload is None or isinstance(upload, str) or not upload.filename:
            raise Refused("choose a still image for the shot")
        sname, data, suffix = await read_image(upload, "still")
        shot: dict[str, Any] = {"id": shot_id, "still": f"stills/{shot_id}{suffix}"}
        chars = [c for c in form.getlist("characters") if isinstance(c, str) and c]
        if chars:
            shot["characters"] = chars
        dur = _s(form, "duration")
        if dur:
            try:
                shot["duration"] = float(dur)
            except ValueError:
                raise Refused(f"duration {dur!r} is not a number of seconds") from None
        if prompt:
            shot["prompt"] = prompt
        text = path.read_text(encoding="utf-8")
        new_text = insert_shot(text, ep_id, shot, where=str(path))
        still = path.parent / shot["still"]
        if still.exists():
            raise Refused(f"{still} already exists; pick another shot id")

        def write() -> None:
            # the still in place (the planner checks it exists), the new text validated beside the spec,
            # then the spec replaced in one rename; on any error both are gone again
            still.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_still = open_temp_beside(still)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            fd, tmp_spec = open_temp_beside(path, suffix=path.suffix)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(new_text)
            try:
                os.replace(tmp_still, still)
                try:
                    spec = load_series(tmp_spec)
                    reg = studio.registry()
                    try:
                        plan_series(spec, tmp_spec, reg, studio.ws)
                    finally:
                        reg.close()
                except BaseException:
                    still.unlink(missing_ok=True)
                    raise
                os.chmod(tmp_spec, path.stat().st_mode & 0o777)
                os.replace(tmp_spec, path)
            finally:
                tmp_still.unlink(missing_ok=True)
                tmp_spec.unlink(missing_ok=True)

        await run_in_threadpool(write)
    except StoryEngineError as e:
        msg = re.sub(r"/[^\s:]*/\.[^\s:/]+\.ya?ml", str(studio.ws.episodes / name), str(e))
        values = {k: _s(form, k) for k in ("episode", "shot", "prompt", "duration")} if form is not None else {}
        if form is not None:
            values["characters"] = [c for c in form.getlist("characters") if isinstance(c, str)]
        return await series_page(request, error=msg, status=400, values=values)
    return await series_page(request, notice=f"shot {shot_id} added to {ep_id} in {name}")


# ---- render

async def render_post(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    name = request.path_params["name"]
    try:
        form = await form_of(request, studio)
        path = studio.spec_path(name)
        if studio.job is not None and not studio.job.finished:
            raise WorkspaceBusy(f"this studio is already rendering {studio.job.label}; wait for it to finish")
        scope_ep = _s(form, "episode")
        shot = _s(form, "shot")
        episodes = None
        label = name
        if shot or scope_ep:
            from ..planner import load_series

            spec = load_series(path)
            if shot:  # a shot renders with its episode: the episode's other shots come from the take cache
                ep = next((e.id for e in spec.episodes for s in e.shots if s.id == shot), None)
                if ep is None:
                    raise Refused(f"{name} has no shot {shot!r}")
                episodes, label = [ep], f"{name} shot {shot} (episode {ep})"
            else:
                if scope_ep not in {e.id for e in spec.episodes}:
                    raise Refused(f"{name} has no episode {scope_ep!r}")
                episodes, label = [scope_ep], f"{name} episode {scope_ep}"
        from .jobs import start_job

        studio.job = await run_in_threadpool(start_job, studio.ws, path, episodes, label, studio.settings(),
                                             studio.backend_factory)
    except WorkspaceBusy as e:
        msg = _page_words(str(e))
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"error": msg}, status_code=409)
        return await series_page(request, error=msg, status=409)
    except StoryEngineError as e:
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"error": str(e)}, status_code=400)
        return await series_page(request, error=str(e), status=400)
    if request.headers.get("accept", "").startswith("application/json"):
        return JSONResponse({"job": studio.job.id, "events": f"/render/{studio.job.id}/events"})
    return RedirectResponse(f"/render/{studio.job.id}", status_code=303)


def _job(request: Request):
    studio: Studio = request.app.state.studio
    job = studio.job
    if job is None or str(job.id) != request.path_params["job"]:
        return None
    return job


async def render_page(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    job = _job(request)
    if job is None:
        return studio.page("error.html.j2", status=404, error="no such render in this studio session")
    return studio.page("render.html.j2", j=job, spec=job.spec_path.name)


async def render_events(request: Request) -> Response:
    """Server-sent events: every event of the render, in order, then ``end``."""
    job = _job(request)
    if job is None:
        return PlainTextResponse("no such render", status_code=404)

    async def stream():
        n = 0
        while True:
            evs, read = await run_in_threadpool(job.batch, n)  # returns as soon as the render has news
            for e in evs:
                yield f"event: {e['kind']}\ndata: {json.dumps(e, default=str)}\n\n"
            n += read
            if job.finished and n >= len(job.events):
                if not any(e["kind"] == "end" for e in job.events):
                    yield f"event: end\ndata: {json.dumps({'kind': 'end', 'state': job.state, 'error': job.error})}\n\n"
                return
            if await request.is_disconnected():
                return

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# ---- takes

class _StudioLinks:
    """report_html's link maker, pointing at /files/ URLs."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.root = studio.ws.root

    def file(self, p: str | None) -> Path | None:
        if not p:
            return None
        path = Path(p)
        return path if path.is_absolute() else self.root / path

    def href(self, path: Path | None) -> str | None:
        return self.studio.href(path)


def _report_json(studio: Studio, series: str) -> dict[str, Any] | None:
    p = studio.ws.series_dir(series) / "report.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except ValueError:
        return None


def _shot_view(studio: Studio, name: str, shot: str) -> dict[str, Any]:
    from ..planner import load_series
    from ..report_html import _take

    path = studio.spec_path(name)
    spec = load_series(path)
    ep = next((e for e in spec.episodes for s in e.shots if s.id == shot), None)
    if ep is None:
        raise Refused(f"{name} has no shot {shot!r}")
    sh = next(s for s in ep.shots if s.id == shot)
    reg = studio.registry()
    try:
        last = next(iter(reg.db.query("select run_id from takes where series = ? and shot_id = ? order by id desc limit 1",
                                      [spec.series, shot])), None)
        rows = list(reg.db.query("select * from takes where run_id = ? and series = ? and shot_id = ? order by take, id",
                                 [last["run_id"], spec.series, shot])) if last else []
        report = _report_json(studio, spec.series) or {}
        final_id = next((s["take_id"] for e in report.get("episodes", []) for s in e.get("shots", [])
                         if s.get("shot") == shot), None)
        links = _StudioLinks(studio)
        takes = [_take(reg, t, links, 3, final_id) for t in rows]  # type: ignore[arg-type]
        decided: dict[int, dict[str, Any]] = {}
        dec = decisions_module()
        if dec is not None and hasattr(dec, "history"):  # the standing decisions, as the next render applies them
            use, per_take = dec.current(dec.history(reg, shot, spec.series))
            decided = {r["take"]: r for r in per_take.values()}
            if use is not None:
                decided[use["take"]] = use
    finally:
        reg.close()
    return {"name": name, "series": spec.series, "episode": ep.id, "shot": sh, "takes": takes, "decided": decided,
            "still": studio.href(path.parent / sh.still) if sh.still != "previous" else None}


async def shot_page(request: Request, *, error: str | None = None, notice: str | None = None, status: int = 200) -> Response:
    studio: Studio = request.app.state.studio
    try:
        view = await run_in_threadpool(_shot_view, studio, request.path_params["name"], request.path_params["shot"])
    except StoryEngineError as e:
        return studio.page("error.html.j2", status=404, error=str(e))
    return studio.page("shot.html.j2", status=status, v=view, error=error, notice=notice,
                       decisions=decisions_module() is not None, actions=ACTIONS)


async def decide(request: Request) -> Response:
    """use | accept | reject a take, recorded as `storyengine takes …` records it."""
    studio: Studio = request.app.state.studio
    name, shot = request.path_params["name"], request.path_params["shot"]
    try:
        form = await form_of(request, studio)
        dec = decisions_module()
        if dec is None:
            raise Refused("take decisions are not available in this install (storyengine.decisions is missing)")
        action, take, reason = _s(form, "action"), _s(form, "take"), _s(form, "reason")
        if action not in ACTIONS:
            raise Refused(f"action {action!r} is not one of {', '.join(ACTIONS)}")
        if not take.isdigit():
            raise Refused(f"take {take!r} is not a number")
        from ..planner import load_series

        series = load_series(studio.spec_path(name)).series

        def record() -> None:
            reg = studio.registry()
            try:
                dec.record(reg, shot, int(take), action, reason=reason, series=series)
            finally:
                reg.close()

        await run_in_threadpool(record)
    except StoryEngineError as e:
        return await shot_page(request, error=str(e), status=400)
    return await shot_page(request, notice=f"take {take} of {shot}: {action} recorded"
                           + (f" ({reason})" if reason else "") + ". The next render of the episode applies it (from the take cache).")


# ---- episodes

def _chapters(studio: Studio, name: str, ep_id: str) -> list[dict[str, Any]]:
    """Where each shot sits in the stitched episode: the stitcher's own layout of the takes it used."""
    from ..planner import load_series
    from ..stitch import Segment, StitchOptions, lay_out

    path = studio.spec_path(name)
    spec = load_series(path)
    ep = next((e for e in spec.episodes if e.id == ep_id), None)
    report = _report_json(studio, spec.series) or {}
    rep_ep = next((e for e in report.get("episodes", []) if e.get("episode") == ep_id), None)
    if ep is None or rep_ep is None:
        return []
    reg = studio.registry()
    try:
        segs = []
        shots = {s.id: s for s in ep.shots}
        for s in rep_ep.get("shots", []):
            if s.get("verdict") not in ("accept", "trim") or not s.get("take_id"):
                continue
            t = next(iter(reg.db.query("select * from takes where id = ?", [s["take_id"]])), None)
            p = studio.ws.root / t["path"] if t and t["path"] else None
            if p is None or not p.is_file():
                continue
            segs.append(Segment(path=p, start=t["keep_start"] or 0, end=t["keep_end"] or None, label=s["shot"],
                                transition=shots[s["shot"]].transition if s["shot"] in shots else None))
    finally:
        reg.close()
    opts = StitchOptions(fps=spec.fps, width=spec.width, height=spec.height, title=ep.title or ep.id,
                         title_duration=ep.title_duration, transition=ep.transition, ambience=ep.ambience,
                         seed=spec.seed, end_card=ep.end_card, beats=ep.beats)
    tl = lay_out(segs, opts)
    return [{"kind": e.kind, "label": e.label if e.kind == "shot" else ("title" if e.kind == "title" else "end card"),
             "start": e.start, "end": e.end} for e in tl.entries(spec.fps)]


def _vtt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _episode_view(studio: Studio, name: str, ep_id: str) -> dict[str, Any]:
    from ..planner import load_series
    from ..provenance import verify

    spec = load_series(studio.spec_path(name))
    ep = next((e for e in spec.episodes if e.id == ep_id), None)
    if ep is None:
        raise Refused(f"{name} has no episode {ep_id!r}")
    video = studio.ws.series_dir(spec.series) / f"{ep_id}.mp4"
    sheet = video.with_suffix(".png")
    view: dict[str, Any] = {"name": name, "series": spec.series, "ep": ep, "video": studio.href(video),
                            "sheet": studio.href(sheet), "chapters": [], "c2pa": None}
    if view["video"]:
        view["chapters"] = _chapters(studio, name, ep_id)
        try:
            res = verify(video)
            view["c2pa"] = {"state": res.state, "lines": res.lines(), "trusted": res.trusted,
                            "development": res.development}
        except StoryEngineError as e:
            view["c2pa"] = {"state": "unreadable", "lines": [str(e)], "trusted": False, "development": False}
    return view


async def episode_page(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    try:
        view = await run_in_threadpool(_episode_view, studio, request.path_params["name"], request.path_params["ep"])
    except StoryEngineError as e:
        return studio.page("error.html.j2", status=404, error=str(e))
    return studio.page("episode.html.j2", v=view)


async def chapters_vtt(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    try:
        chapters = await run_in_threadpool(_chapters, studio, request.path_params["name"], request.path_params["ep"])
    except StoryEngineError as e:
        return PlainTextResponse(str(e), status_code=404)
    cues = [f"{i + 1}\n{_vtt_time(c['start'])} --> {_vtt_time(c['end'])}\n{c['label']}\n" for i, c in enumerate(chapters)]
    return Response("WEBVTT\n\n" + "\n".join(cues), media_type="text/vtt; charset=utf-8")


# ---- the report

def _report_view(studio: Studio, name: str) -> dict[str, Any] | None:
    from ..planner import load_series
    from ..report_html import page_data

    spec = load_series(studio.spec_path(name))
    report = _report_json(studio, spec.series)
    if report is None:
        return None
    reg = studio.registry()
    try:
        data = page_data(reg, report, html_path=studio.ws.root / "report.html")
    finally:
        reg.close()

    def fix(h: str | None) -> str | None:  # links relative to the workspace root → /files/
        if not h or h.startswith(("data:", "#", "/", "http:", "https:", "file:")):
            return h
        return "/files/" + h

    for ep in data["episodes"]:
        ep["video"], ep["sheet"] = fix(ep["video"]), fix(ep["sheet"])
        for sh in ep["shot_rows"]:
            for t in sh["take_rows"]:
                t["href"] = fix(t["href"])
    data["report_json"] = fix(data["report_json"])
    return data


async def report_page(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    try:
        data = await run_in_threadpool(_report_view, studio, request.path_params["name"])
    except StoryEngineError as e:
        return studio.page("error.html.j2", status=404, error=str(e))
    if data is None:
        return studio.page("error.html.j2", status=404, error="no report yet: render the series first")
    text = studio.env.get_template("studio/report.html.j2").render(**data, csrf=studio.csrf, job=studio.job,
                                                                  spec_name=request.path_params["name"])
    return HTMLResponse(text)


# ---- files

async def files(request: Request) -> Response:
    """A file under the workspace (resolved: no `..`, no symlink out), with Range support (206)."""
    studio: Studio = request.app.state.studio
    rel = request.path_params["path"]
    root = studio.ws.root.resolve()
    parts = Path(rel).parts
    if not rel or any(p in ("..", "") or p.startswith(".") for p in parts) or Path(rel).is_absolute():
        return PlainTextResponse("not found", status_code=404)
    target = (root / rel).resolve()
    if not target.is_relative_to(root) or not target.is_file() or target.suffix.lower() not in SERVED:
        return PlainTextResponse("not found", status_code=404)
    disposition = "attachment" if request.query_params.get("download") else "inline"
    return FileResponse(target, media_type=SERVED[target.suffix.lower()], filename=target.name,
                        content_disposition_type=disposition, headers={"Cache-Control": "no-cache"})


async def state_json(request: Request) -> Response:
    """The JSON twin of the home page: characters, specs and the current render."""
    studio: Studio = request.app.state.studio
    reg = studio.registry()
    try:
        chars = [{"handle": c["handle"], "kind": c["kind"], "photos": len(c["photos"])} for c in _characters(studio, reg)]
    finally:
        reg.close()
    job = studio.job
    return JSONResponse({"workspace": str(studio.ws.root), "characters": chars, "specs": [p.name for p in studio.specs()],
                         "render": {"id": job.id, "label": job.label, "state": job.state, "error": job.error} if job else None})


# 5. The app -------------------------------------------------------------------------------------


def create_app(workspace: str | Path, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
               settings: Settings | None = None, backend_factory: Callable[[], Any] | None = None) -> Any:
    """The studio as an ASGI app (wrapped in the security gate).

    Args:
        workspace: the workspace folder (created if missing, as the CLI does).
        host, port: the address it will be served on (the Host header must match).
        token: required on every request when set; a non-local ``host`` without one is refused.
        settings: override the workspace's settings (tests); default ``Settings.load`` per render.
        backend_factory: builds the back-end for a render (tests pass tiny ones); default from the spec.
    """
    from .security import is_local

    if not is_local(host) and not token:
        raise StoryEngineError(f"the studio binds {host}, which other machines can reach: pass --token (or let "
                               "`storyengine studio` generate one)")
    studio = Studio(Path(workspace), settings=settings, backend_factory=backend_factory)

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, BodyTooLarge):
            return studio.page("error.html.j2", status=413, error=f"upload too large: {exc}")
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return studio.page("error.html.j2", status=500,
                           error=f"something went wrong ({type(exc).__name__}); the details are in the studio's terminal")

    async def http_error(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 400)
        what = {404: "no such page", 405: "that method is not used here"}.get(code, f"the request could not be read: {getattr(exc, 'detail', exc)}")
        return studio.page("error.html.j2", status=code, error=what)

    from starlette.exceptions import HTTPException

    routes = [
        Route("/", home),
        Route("/state.json", state_json),
        Route("/characters", characters_page),
        Route("/characters", register_post, methods=["POST"]),
        Route("/characters/{handle}/{action}", character_action, methods=["POST"]),
        Route("/series/{name}", series_page),
        Route("/series/{name}/shots", add_shot, methods=["POST"]),
        Route("/series/{name}/render", render_post, methods=["POST"]),
        Route("/series/{name}/report", report_page),
        Route("/series/{name}/shots/{shot}", shot_page),
        Route("/series/{name}/shots/{shot}/decide", decide, methods=["POST"]),
        Route("/series/{name}/episodes/{ep}", episode_page),
        Route("/series/{name}/episodes/{ep}/chapters.vtt", chapters_vtt),
        Route("/render/{job}", render_page),
        Route("/render/{job}/events", render_events),
        Route("/files/{path:path}", files),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={Exception: on_error, BodyTooLarge: on_error,
                                                       HTTPException: http_error})
    app.state.studio = studio
    gated = Gate(app, host=host, port=port, token=token, max_body=MAX_BODY)
    gated.studio = studio  # type: ignore[attr-defined]
    return gated


mimetypes.add_type("text/vtt", ".vtt")
