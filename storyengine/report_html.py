"""The report as one self-contained HTML page: plots (matplotlib) and thumbnails inline as data URIs.

Sections (each a ``<section>`` with a stable id, which the Chromium test looks for):
``summary`` (the per-episode tables), ``week`` (each character across the episodes),
``shot-<id>`` (similarity over time with the bound, worst frames beside the reference photo).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .registry import Registry
from .workspace import atomic_path

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1d232b;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c2cc}main{padding:12px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px}h3{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid #edf0f3;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.l,th.l{text-align:left}td.reason{white-space:normal;text-align:left;color:#4a5561;max-width:420px}
.v{font-weight:600;border-radius:4px;padding:1px 6px}.accept{background:#e3f6e8;color:#17692f}.trim{background:#e3f1fb;color:#0f5a8a}
.reject,.retry{background:#fde8e8;color:#9b1c1c}.shot{display:grid;grid-template-columns:1fr 360px;gap:16px;align-items:start}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumbs figure{margin:0;text-align:center;font-size:12px;color:#4a5561}
.thumbs img{width:104px;height:104px;object-fit:cover;border-radius:6px;border:2px solid #e1e5ea}
.thumbs figure.ref img{border-color:#3b82f6}.thumbs figure.bad img{border-color:#dc2626}
img.plot{width:100%;height:auto}.muted{color:#6b7682}
"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


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


def _frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    from . import media

    out: dict[int, np.ndarray] = {}
    if not wanted or not path.is_file():
        return out
    for i, f in enumerate(media.iter_frames(path, max_frames=max(wanted) + 1)):
        if i in wanted:
            out[i] = f.copy()
    return out


def _reference(reg: Registry, handle: str) -> str | None:
    if reg.workspace is None:
        return None
    for p in reg.photos(handle):
        path = Path(p["path"])
        path = path if path.is_absolute() else reg.workspace.root / path
        if not path.is_file():
            path = reg.workspace.characters / handle / "photos" / Path(p["path"]).name
        if path.is_file():
            box = next((json.loads(r["box"]) for r in reg.db.query(
                "select box from embeddings where photo_id = ? and box is not null limit 1", [p["id"]])), None)
            return _jpeg(_crop(np.asarray(Image.open(path).convert("RGB")), box))
    return None


def _shot_plot(frames: list[dict[str, Any]], sh: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 2.3))
    fps = sh.get("fps") or 24
    colours = ["#2563eb", "#d97706", "#059669", "#7c3aed"]
    for k, c in enumerate(sh["characters"]):
        mine = [f for f in frames if f["handle"] == c["character"] and f["encoder"] == c["encoder"]]
        t = [f["frame"] / fps for f in mine]
        s = [np.nan if f["similarity"] is None else f["similarity"] for f in mine]
        col = colours[k % len(colours)]
        ax.plot(t, s, "-", color=col, lw=1.6, label=f"{c['character']} ({c['encoder']})")
        bad = [(f["frame"] / fps, f["similarity"]) for f in mine if f["drifted"]]
        if bad:
            ax.plot(*zip(*bad), "o", color="#dc2626", ms=3.5, label="below bound" if k == 0 else None)
        if c["bound"] is not None:
            ax.axhline(c["bound"], color=col, ls="--", lw=1, alpha=0.8)
            ax.annotate(f"bound {c['bound']:.2f}", (1, c["bound"]), xycoords=("axes fraction", "data"), color=col,
                        va="bottom", ha="right", fontsize=8)
    ks, ke = sh["keep"]
    if sh["verdict"] == "trim":
        ax.axvspan(ks / fps, ke / fps, color="#3b82f6", alpha=0.07, label="kept")
    ax.set_xlabel("seconds")
    ax.set_ylabel("similarity")
    ax.grid(alpha=0.25)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return _png(fig)


def _week_plot(report: dict[str, Any]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chars = report.get("characters") or []
    if not chars:
        return None
    eps = [e["episode"] for e in report["episodes"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 2.8))
    for c in chars:
        by = {r["episode"]: r for r in c["episodes"]}
        x = [i for i, e in enumerate(eps) if e in by]
        lab = f"{c['character']} ({c['encoder']})"
        line, = axes[0].plot(x, [by[eps[i]]["mean"] for i in x], "o-", label=lab)
        axes[0].plot(x, [by[eps[i]]["min"] for i in x], "v:", color=line.get_color(), alpha=0.6)
        if c["bound"] is not None:
            axes[0].axhline(c["bound"], color=line.get_color(), ls="--", lw=1, alpha=0.6)
        axes[1].plot(x, [by[eps[i]]["to_previous"] if by[eps[i]]["to_previous"] is not None else np.nan for i in x], "o-",
                     color=line.get_color(), label=lab)
    for ax, title in zip(axes, ("accepted frames vs registry (mean ●, min ▼, bound --)", "episode to previous episode")):
        ax.set_xticks(range(len(eps)), eps, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.25)
    axes[0].legend(fontsize=8, frameon=False)
    return _png(fig)


def _f(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def build_html(reg: Registry, report: dict[str, Any], *, worst: int = 3) -> str:
    """The page as a string (plots and thumbnails inline)."""
    e = html.escape
    refs: dict[str, str | None] = {}
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(report['series'])} — consistency report</title>",
             f"<style>{CSS}</style></head><body><header><h1>{e(report['series'])} — consistency report</h1>",
             f"<p>run {report['run']} · {e(str(report.get('finished_at') or report.get('started_at') or ''))} · "
             f"report v{report['report_version']}</p></header><main>"]
    # 1. Summary tables
    parts.append("<section id='summary'><h2>Shots</h2>")
    for ep in report["episodes"]:
        parts.append(f"<h3>{e(ep['episode'])}</h3><table><tr><th class='l'>shot</th><th class='l'>character</th><th>frames</th>"
                     "<th>mean</th><th>min</th><th>p5</th><th>bound</th><th>subject cons.</th><th>flicker</th><th>takes</th>"
                     "<th class='l'>verdict</th><th class='l'>reason</th></tr>")
        for sh in ep["shots"]:
            chars = sh["characters"] or [{"character": "—", "frames_scored": 0, "mean": None, "min": None, "p5": None,
                                          "bound": None, "subject_consistency": None}]
            for i, c in enumerate(chars):
                first = i == 0
                parts.append(
                    f"<tr><td>{e(sh['shot']) if first else ''}</td><td class='l'>{e(c['character'])}</td><td>{c['frames_scored']}</td>"
                    f"<td>{_f(c['mean'])}</td><td>{_f(c['min'])}</td><td>{_f(c['p5'])}</td><td>{_f(c['bound'])}</td>"
                    f"<td>{_f(c.get('subject_consistency'))}</td><td>{_f(sh.get('flicker')) if first else ''}</td>"
                    f"<td>{sh['takes'] if first else ''}</td>"
                    f"<td class='l'>{_badge(sh['verdict']) if first else ''}</td><td class='reason'>{e(sh['reason'] or '') if first else ''}</td></tr>")
        parts.append("</table>")
    parts.append("</section>")
    # 2. The week view
    parts.append("<section id='week'><h2>Characters across the series</h2>")
    wk = _week_plot(report)
    if wk:
        parts.append(f"<img class='plot' alt='characters across episodes' src='{wk}'>")
        parts.append("<table><tr><th class='l'>character</th>" + "".join(f"<th>{e(x['episode'])}</th>" for x in report["episodes"])
                     + "<th>mean</th><th>worst episode</th><th>episode→episode min</th><th>bound</th></tr>")
        for c in report["characters"]:
            by = {r["episode"]: r for r in c["episodes"]}
            parts.append(f"<tr><td>{e(c['character'])} <span class='muted'>({e(c['encoder'])})</span></td>"
                         + "".join(f"<td>{_f(by[x['episode']]['mean']) if x['episode'] in by else '—'}</td>" for x in report["episodes"])
                         + f"<td>{_f(c['mean'])}</td><td>{_f(c['worst_episode_mean'])}</td><td>{_f(c['min_episode_to_episode'])}</td>"
                         f"<td>{_f(c['bound'])}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p class='muted'>No accepted shot with a character yet.</p>")
    parts.append("</section>")
    # 3. Per shot: similarity over time, worst frames next to the reference photo
    for ep in report["episodes"]:
        for sh in ep["shots"]:
            frames = list(reg.db.query("select frame, time, handle, encoder, similarity, box, drifted from frame_scores "
                                       "where take_id = ? order by frame", [sh["take_id"]]))
            parts.append(f"<section id='shot-{e(sh['shot'])}' class='shot-section'><h2>{e(ep['episode'])} / {e(sh['shot'])} "
                         f"{_badge(sh['verdict'])}</h2><p class='muted'>{e(sh['reason'] or '')}</p>")
            if not frames:
                parts.append("<p class='muted'>No frames scored (no character planned).</p></section>")
                continue
            parts.append(f"<div class='shot'><img class='plot' alt='similarity over time' src='{_shot_plot(frames, sh)}'><div class='thumbs'>")
            scored = sorted((f for f in frames if f["similarity"] is not None), key=lambda f: f["similarity"])[:worst]
            path = Path(sh["path"]) if sh.get("path") else None
            if path is not None and not path.is_absolute() and reg.workspace is not None:
                path = reg.workspace.root / path
            imgs = _frames(path, {f["frame"] for f in scored}) if path else {}
            for handle in dict.fromkeys(f["handle"] for f in scored):
                if handle not in refs:
                    refs[handle] = _reference(reg, handle)
                if refs[handle]:
                    parts.append(f"<figure class='ref'><img alt='reference {e(handle)}' src='{refs[handle]}'><figcaption>{e(handle)} (registry)</figcaption></figure>")
            for f in scored:
                if f["frame"] in imgs:
                    cls = "bad" if f["drifted"] else ""
                    parts.append(f"<figure class='{cls}'><img alt='frame {f['frame']}' src='{_jpeg(_crop(imgs[f['frame']], json.loads(f['box']) if f['box'] else None))}'>"
                                 f"<figcaption>frame {f['frame']} · {f['similarity']:.3f}</figcaption></figure>")
            parts.append("</div></div></section>")
    parts.append("</main></body></html>")
    return "".join(parts)


def _badge(verdict: str) -> str:
    return f"<span class='v {html.escape(verdict)}'>{html.escape(verdict)}</span>"


def write_html(reg: Registry, report: dict[str, Any], path: str | Path) -> Path:
    """Write the page atomically; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(build_html(reg, report), encoding="utf-8")
    return path
