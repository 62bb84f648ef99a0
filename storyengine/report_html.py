"""The report as an HTML page a creator can share: episodes to play, every take of every shot side by side.

Two steps, so that the templates (which the studio extends) never reach the registry:
1. :func:`page_data` reads everything the page shows (takes, frame scores, reference photos, worst
   frames, the spec's titles and prompts) into plain dicts and lists;
2. :func:`render_page` fills the Jinja2 templates in ``storyengine/templates/report/`` (autoescaped;
   ``base.html.j2`` is the layout with blocks, ``report.html.j2`` the page, ``macros.html.j2`` the parts).

Plots are inline SVG on a fixed 0–1 similarity axis with the bound drawn; thumbnails are inline JPEG
data URIs; episodes, takes, contact sheets and report.json are linked relative to the page, so the
folder can be shared or served as it is. Sections carry stable ids (``summary``, ``episodes``,
``week``, ``shot-<id>``) that the Chromium test looks for.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from .registry import Registry
from .report import ACCEPTED
from .workspace import atomic_path

COLOURS = ["#2563eb", "#d97706", "#059669", "#7c3aed"]
# SVG user units: a take's plot is drawn about 320 px wide (a take card), the series plot about 760 px
TAKE_W, TAKE_H, WEEK_W, WEEK_H = 340, 140, 680, 200
PAD_L, PAD_R, PAD_T, PAD_B = 30, 8, 8, 22


# 1. Small helpers: images, links ---------------------------------------------------------------


def _jpeg(rgb: np.ndarray, size: int = 208) -> str:
    im = Image.fromarray(rgb)
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _crop(img: np.ndarray, box: list[int] | None) -> np.ndarray:
    if not box:
        return img
    x0, y0, x1, y1 = box
    m = (x1 - x0) // 3
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[max(0, y0 - m):min(h, y1 + m), max(0, x0 - m):min(w, x1 + m)])


def _frames(path: Path | None, wanted: set[int]) -> dict[int, np.ndarray]:
    from . import media

    from .errors import MediaError

    out: dict[int, np.ndarray] = {}
    if not wanted or path is None or not path.is_file():
        return out
    try:
        for i, f in enumerate(media.iter_frames(path, max_frames=max(wanted) + 1)):
            if i in wanted:
                out[i] = f.copy()
    except MediaError:
        pass  # a damaged take: the page shows its numbers without pictures rather than failing
    return out


class _Links:
    """Workspace-relative paths from the registry → files on disk and hrefs relative to the page."""

    def __init__(self, reg: Registry, page: Path | None) -> None:
        self.root = reg.workspace.root if reg.workspace is not None else None
        self.base = page.resolve().parent if page is not None else None

    def file(self, p: str | None) -> Path | None:
        if not p:
            return None
        path = Path(p)
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        return path

    def href(self, path: Path | None) -> str | None:
        """A relative URL to ``path`` if the file exists (None otherwise)."""
        if path is None or not path.is_file():
            return None
        if self.base is None:
            return path.resolve().as_uri()
        return quote(Path(os.path.relpath(path.resolve(), self.base)).as_posix())


# 2. Plots as coordinates (the template draws them) ------------------------------------------------


def _y(s: float, h: int = TAKE_H) -> float:
    """Similarity → SVG y on the fixed 0–1 axis (values under 0 sit on the axis)."""
    return round(PAD_T + (1.0 - min(1.0, max(0.0, s))) * (h - PAD_T - PAD_B), 1)


def _axis(n: int, fps: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    inner = TAKE_W - PAD_L - PAD_R

    def x(frame: float) -> float:
        return round(PAD_L + inner * (frame / max(1, n - 1)), 1)

    yticks = [{"y": _y(v), "label": f"{v:g}"} for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    secs = (n - 1) / fps if n > 1 else 0.0
    step = next((s for s in (0.5, 1, 2, 5, 10, 30, 60) if secs / s <= 6), 120)
    xticks = [{"x": x(t * fps), "label": f"{t:g}s"} for t in np.arange(0.0, secs + 1e-9, step)]
    return yticks, xticks, x


def _label_bounds(bounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place each bound's label 3 px above its line, pushed up so that labels stay 11 px apart."""
    last = None
    for b in sorted(bounds, key=lambda b: -b["y"]):
        y = b["y"] - 3
        if last is not None and y > last - 11:
            y = last - 11
        b["label_y"] = last = round(y, 1)
    return bounds


def _shot_plot(frames: list[dict[str, Any]], chars: list[dict[str, Any]], n: int, fps: float,
               keep: tuple[int, int] | None) -> dict[str, Any]:
    """One take's similarity over time: a line per character, drifted frames as dots, bounds dashed."""
    yticks, xticks, x = _axis(n, fps)
    series, bounds = [], []
    for k, c in enumerate(chars):
        col = COLOURS[k % len(COLOURS)]
        mine = [f for f in frames if f["handle"] == c["character"] and f["encoder"] == c["encoder"]]
        runs: list[list[tuple[float, float]]] = [[]]
        for f in mine:  # a frame without the face breaks the line
            if f["similarity"] is None:
                runs.append([])
            else:
                runs[-1].append((x(f["frame"]), _y(f["similarity"])))
        series.append({"colour": col, "label": f"{c['character']} ({c['encoder']})",
                       "lines": [" ".join(f"{px},{py}" for px, py in r) for r in runs if len(r) > 1],
                       "single": [{"x": r[0][0], "y": r[0][1]} for r in runs if len(r) == 1],
                       "dots": [{"x": x(f["frame"]), "y": _y(f["similarity"])} for f in mine
                                if f["similarity"] is not None and f["drifted"]], "means": [], "mins": []})
        if c.get("bound") is not None:
            bounds.append({"colour": col, "y": _y(c["bound"]), "label": f"bound {c['bound']:.2f}", "value": c["bound"]})
    kept = None
    if keep is not None and keep != (0, n) and keep[1] > keep[0]:
        kept = {"x": x(keep[0]), "w": round(x(keep[1] - 1) - x(keep[0]), 1)}
    return {"w": TAKE_W, "h": TAKE_H, "left": PAD_L, "right": TAKE_W - PAD_R, "top": PAD_T, "bottom": TAKE_H - PAD_B,
            "yticks": yticks, "xticks": xticks, "series": series, "bounds": _label_bounds(bounds), "kept": kept,
            "label": "similarity to the registry over time, 0 to 1"}


def _week_plot(report: dict[str, Any]) -> dict[str, Any] | None:
    """Each character's mean (and min) over the accepted frames of each episode, on the 0–1 axis."""
    chars = report.get("characters") or []
    eps = [e["episode"] for e in report["episodes"]]
    if not chars or not eps:
        return None
    inner = WEEK_W - PAD_L - PAD_R
    step = inner / max(1, len(eps))

    def x(i: int) -> float:
        return round(PAD_L + step * (i + 0.5), 1)

    series, bounds = [], []
    for k, c in enumerate(chars):
        col = COLOURS[k % len(COLOURS)]
        by = {r["episode"]: r for r in c["episodes"]}
        pts = [(x(i), by[e]) for i, e in enumerate(eps) if e in by and by[e]["mean"] is not None]
        series.append({"colour": col, "label": f"{c['character']} ({c['encoder']})",
                       "lines": [" ".join(f"{px},{_y(r['mean'], WEEK_H)}" for px, r in pts)] if len(pts) > 1 else [],
                       "means": [{"x": px, "y": _y(r["mean"], WEEK_H), "value": r["mean"]} for px, r in pts],
                       "mins": [{"x": px, "y": _y(r["min"], WEEK_H), "value": r["min"]} for px, r in pts if r["min"] is not None],
                       "single": [], "dots": []})
        if c.get("bound") is not None:
            bounds.append({"colour": col, "y": _y(c["bound"], WEEK_H), "label": f"bound {c['bound']:.2f}", "value": c["bound"]})
    return {"w": WEEK_W, "h": WEEK_H, "left": PAD_L, "right": WEEK_W - PAD_R, "top": PAD_T, "bottom": WEEK_H - PAD_B,
            "yticks": [{"y": _y(v, WEEK_H), "label": f"{v:g}"} for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
            "xticks": [{"x": x(i), "label": e} for i, e in enumerate(eps)], "series": series,
            "bounds": _label_bounds(bounds), "kept": None, "label": "mean similarity per episode, 0 to 1"}


# 3. Worst frames: distinct and spread over the take ----------------------------------------------


def worst_frames(frames: list[dict[str, Any]], n_frames: int, k: int = 3) -> list[dict[str, Any]]:
    """Up to ``k`` lowest-similarity frames, at least ``n_frames / (2k)`` frames apart.

    Neighbouring frames of a motion take look alike (the face barely moves in 1/24 s), so the
    plain k lowest would show one moment k times; spreading them shows where over the take it sags.
    """
    gap = max(1, n_frames // (2 * max(1, k)))
    picked: list[dict[str, Any]] = []
    for f in sorted((f for f in frames if f["similarity"] is not None), key=lambda f: (f["similarity"], f["frame"])):
        if all(abs(f["frame"] - p["frame"]) >= gap for p in picked):
            picked.append(f)
            if len(picked) == k:
                break
    return sorted(picked, key=lambda f: f["frame"])


# 4. The data the page shows ---------------------------------------------------------------------


def _spec_text(reg: Registry, run: dict[str, Any] | None, links: _Links) -> dict[str, Any]:
    """Titles and prompts from the series spec the run rendered (best effort: the spec may have moved)."""
    from .errors import StoryEngineError
    from .planner import load_series

    out: dict[str, Any] = {"title": "", "episodes": {}, "prompts": {}}
    path = links.file(run["spec_path"]) if run and run.get("spec_path") else None
    if path is None or not path.is_file():
        return out
    try:
        spec = load_series(path)
    except (StoryEngineError, OSError, ValueError):
        return out
    out["title"] = spec.title
    for ep in spec.episodes:
        out["episodes"][ep.id] = ep.title
        for sh in ep.shots:
            out["prompts"][sh.id] = sh.prompt
    return out


def _reference(reg: Registry, handle: str, links: _Links) -> str | None:
    for p in reg.photos(handle):
        path = links.file(p["path"])
        if (path is None or not path.is_file()) and reg.workspace is not None:
            path = reg.workspace.characters / handle / "photos" / Path(p["path"]).name
        if path is not None and path.is_file():
            box = next((json.loads(r["box"]) for r in reg.db.query(
                "select box from embeddings where photo_id = ? and box is not null limit 1", [p["id"]])), None)
            return _jpeg(_crop(np.asarray(Image.open(path).convert("RGB")), box))
    return None


def _take(reg: Registry, t: dict[str, Any], links: _Links, worst: int, final_id: int) -> dict[str, Any]:
    chars = [{"character": c["handle"], "encoder": c["encoder"], "bound": c["bound"], "mean": c["mean"], "min": c["min"],
              "frames_drifted": c["frames_drifted"], "frames_scored": c["frames_scored"]}
             for c in reg.db.query("select * from character_scores where take_id = ? order by id", [t["id"]])]
    frames = list(reg.db.query("select frame, handle, encoder, similarity, box, drifted from frame_scores "
                               "where take_id = ? order by frame", [t["id"]]))
    n = t["num_frames"] or (max((f["frame"] for f in frames), default=-1) + 1)
    fps = float(t["fps"] or 24)
    keep = (t["keep_start"] or 0, t["keep_end"] or 0) if t["decision"] == "trim" else None
    path = links.file(t["path"])
    per = worst if len(chars) <= 1 else max(1, worst - 1)
    picks = [f for c in chars for f in worst_frames(
        [f for f in frames if f["handle"] == c["character"] and f["encoder"] == c["encoder"]], n, per)]
    imgs = _frames(path, {f["frame"] for f in picks} | {n // 2})
    thumbs = [{"src": _jpeg(_crop(imgs[f["frame"]], json.loads(f["box"]) if f["box"] else None)),
               "frame": f["frame"], "time": f["frame"] / fps, "similarity": f["similarity"], "drifted": bool(f["drifted"]),
               "character": f["handle"]} for f in picks if f["frame"] in imgs]
    return {"id": t["id"], "number": t["take"], "verdict": t["decision"], "reason": t["reason"] or "",
            "final": t["id"] == final_id, "used": bool(t.get("used")), "seed": t["seed"], "mood": t.get("mood") or "",
            "frames": n, "fps": fps, "keep": [t["keep_start"], t["keep_end"]], "characters": chars,
            "href": links.href(path), "name": path.name if path else "",
            "poster": _jpeg(imgs[n // 2], 480) if n // 2 in imgs else None,
            "plot": _shot_plot(frames, chars, n, fps, keep) if frames else None, "thumbs": thumbs}


def page_data(reg: Registry, report: dict[str, Any], *, html_path: str | Path | None = None, worst: int = 3) -> dict[str, Any]:
    """Everything the page shows, read from the registry and the files (the templates read nothing).

    Args:
        reg: the registry the report was built from.
        report: :func:`storyengine.report.build_report`'s dict.
        html_path: where the page will be written; links are made relative to it.
        worst: worst frames shown per take.
    """
    links = _Links(reg, Path(html_path) if html_path else None)
    run = (list(reg.db.query("select * from runs where id = ?", [report["run"]])) or [None])[0]
    spec = _spec_text(reg, run, links)
    ep_rows = {r["episode_id"]: r for r in reg.db.query(
        "select * from episodes where series = ? order by id", [report["series"]])}
    refs: dict[str, str | None] = {}
    episodes, shots = [], []
    for ep in report["episodes"]:
        row = ep_rows.get(ep["episode"]) or {}
        video = links.file(ep.get("path"))
        sheet = links.file(row.get("contact_sheet")) or (video.with_suffix(".png") if video else None)
        ep_shots = []
        for sh in ep["shots"]:
            final = (list(reg.db.query("select * from takes where id = ?", [sh["take_id"]])) or [None])[0]
            rows = list(reg.db.query("select * from takes where run_id = ? and series = ? and episode_id = ? and shot_id = ? "
                                     "order by take, id", [final["run_id"], report["series"], ep["episode"], sh["shot"]])) \
                if final else []
            takes = [_take(reg, t, links, worst, sh["take_id"]) for t in rows]
            handles = list(dict.fromkeys(c["character"] for c in sh["characters"]))
            for h in handles:
                if h not in refs:
                    refs[h] = _reference(reg, h, links)
            entry = {**sh, "prompt": spec["prompts"].get(sh["shot"], ""), "take_rows": takes,
                     "accepted": sh["verdict"] in ACCEPTED,
                     "refs": [{"character": h, "src": refs[h]} for h in handles if refs[h]]}
            ep_shots.append(entry)
            shots.append(entry)
        # the poster: the middle of the first shot in the episode (a frame from the episode itself may be a card or a dissolve)
        poster = next((t["poster"] for s in ep_shots if s["accepted"] for t in s["take_rows"] if t["final"] and t["poster"]), None)
        episodes.append({**ep, "title": spec["episodes"].get(ep["episode"], ""), "video": links.href(video),
                         "poster": poster,
                         "video_name": video.name if video else "", "sheet": links.href(sheet),
                         "sheet_name": sheet.name if sheet else "", "shot_rows": ep_shots,
                         "accepted": sum(s["accepted"] for s in ep_shots)})
    report_json = reg.workspace.series_dir(report["series"]) / "report.json" if reg.workspace is not None else None
    n_takes = sum(len(s["take_rows"]) for s in shots)
    summary = {"shots": len(shots), "accepted": sum(s["accepted"] for s in shots),
               "trimmed": sum(s["verdict"] == "trim" for s in shots),
               "rejected": [s for s in shots if not s["accepted"]], "takes": n_takes,
               "retried": sum(len(s["take_rows"]) > 1 for s in shots), "episodes": len(episodes),
               "playable": sum(e["video"] is not None for e in episodes),
               "characters": [{"character": c["character"], "encoder": c["encoder"], "mean": c["mean"],
                               "bound": c["bound"]} for c in report.get("characters") or []]}
    return {"series": report["series"], "title": spec["title"] or report["series"], "run": report["run"],
            "status": report.get("status"), "started_at": report.get("started_at"),
            "finished_at": report.get("finished_at"), "report_version": report["report_version"],
            "summary": summary, "episodes": episodes,
            "characters": [{**c, "by_episode": {r["episode"]: r for r in c["episodes"]}} for c in report.get("characters") or []],
            "week_plot": _week_plot(report), "report_json": links.href(report_json)}


# 5. Rendering ------------------------------------------------------------------------------------


def environment():
    """The Jinja2 environment of the report templates (autoescaped); the studio adds its own loader."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("storyengine", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda v, n=3: "—" if v is None else f"{v:.{n}f}"
    env.filters["secs"] = lambda v: "—" if v is None else f"{v:.1f} s"
    return env


def render_page(data: dict[str, Any], template: str = "report/report.html.j2") -> str:
    """Fill the page template with :func:`page_data`'s dict."""
    return environment().get_template(template).render(**data)


def build_html(reg: Registry, report: dict[str, Any], *, html_path: str | Path | None = None, worst: int = 3) -> str:
    """The page as a string: data first, then the templates."""
    return render_page(page_data(reg, report, html_path=html_path, worst=worst))


def write_html(reg: Registry, report: dict[str, Any], path: str | Path) -> Path:
    """Write the page atomically (links relative to ``path``); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = build_html(reg, report, html_path=path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def open_in_browser(path: str | Path) -> bool:
    """Open the written page in the user's browser (``report --open``); False if none could be started."""
    import webbrowser

    return webbrowser.open(Path(path).resolve().as_uri())
