"""Registry runs → the consistency report (a dict that becomes JSON; the CLI draws the table, report_html the page).

Field names are stable and documented in docs/report.md. Per series: every shot's final take
(from the latest run that rendered the shot, so episodes rendered in separate runs add up), and a
per-character view across the whole series (each episode's accepted frames against the registry,
and episode to episode).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .errors import RegistryError
from .registry import Registry

REPORT_VERSION = 2
ACCEPTED = ("accept", "trim")


def _r(v: float | None, n: int = 4) -> float | None:
    return None if v is None else round(float(v), n)


def final_takes(reg: Registry, series: str, run_id: int | None = None) -> list[dict[str, Any]]:
    """The last take of each shot: from ``run_id``, or from the latest run that rendered the shot."""
    where, args = ("run_id = ?", [run_id]) if run_id else ("series = ?", [series])
    last: dict[str, dict[str, Any]] = {}
    for t in reg.db.query(f"select * from takes where {where} order by run_id, id", args):
        prev = last.get(t["shot_id"])
        if prev is not None and prev["run_id"] == t["run_id"] and prev.get("used") and not t.get("used"):
            continue  # the take the episode used (``takes: N``) stands for the shot, not the last one rendered
        last[t["shot_id"]] = t
    return list(last.values())


def accepted_frames(reg: Registry, take: dict[str, Any], handle: str | None = None) -> list[dict[str, Any]]:
    """Frame scores of a take inside its kept range (the frames that reach the episode)."""
    q = "select * from frame_scores where take_id = ? and frame >= ? and frame < ?"
    args: list[Any] = [take["id"], take["keep_start"] or 0, take["keep_end"] or 0]
    if handle:
        q += " and handle = ?"
        args.append(handle)
    return list(reg.db.query(q + " order by frame", args))


def build_report(reg: Registry, series: str, run_id: int | None = None,
                 episode: str | list[str] | None = None) -> dict[str, Any]:
    """The report of ``series`` (optionally only ``episode``, one id or several); raises RegistryError naming
    what is missing."""
    run = (list(reg.db.query("select * from runs where id = ?", [run_id])) or [None])[0] if run_id else reg.latest_run(series)
    if not run:
        known = ", ".join(reg.series_names()) or "none"
        raise RegistryError(f"no render of series {series!r} is recorded (series rendered here: {known})")
    finals = final_takes(reg, series, run_id)
    if episode:
        wanted = [episode] if isinstance(episode, str) else list(episode)
        eps = sorted({t["episode_id"] for t in finals})
        for e in wanted:
            if e not in eps:
                raise RegistryError(f"series {series!r} has no rendered episode {e!r} (rendered: {', '.join(eps) or 'none'})")
        finals = [t for t in finals if t["episode_id"] in wanted]
    ep_rows = {r["episode_id"]: r for r in reg.db.query("select * from episodes where series = ? order by id", [series])}
    # The report describes the episodes on disk: a shot the latest stitched episode does not list
    # (removed from the spec, then the episode re-rendered) is not reported, whatever older runs hold.
    on_disk = {e: set(json.loads(r["shots_used"] or "[]")) | set(json.loads(r["shots_rejected"] or "[]"))
               for e, r in ep_rows.items()}
    finals = [t for t in finals if not on_disk.get(t["episode_id"]) or t["shot_id"] in on_disk[t["episode_id"]]]
    counts = {r["shot_id"]: r["n"] for r in reg.db.query(
        "select shot_id, count(*) as n from takes where series = ? and run_id = ? group by shot_id", [series, run["id"]])}
    episodes: dict[str, dict[str, Any]] = {}
    for t in sorted(finals, key=lambda t: (t["episode_id"], t["id"])):
        ep = episodes.get(t["episode_id"])
        if ep is None:
            row = ep_rows.get(t["episode_id"])
            ep = episodes[t["episode_id"]] = {
                "episode": t["episode_id"], "path": row["path"] if row else None,
                "duration": _r(row["duration"], 3) if row else None, "frames": row["frames"] if row else None,
                "shots_used": json.loads(row["shots_used"]) if row else [],
                "shots_rejected": json.loads(row["shots_rejected"]) if row else [], "shots": []}
        ep["shots"].append(_shot(reg, t, counts.get(t["shot_id"]) or _take_count(reg, t)))
    for ep in episodes.values():
        ep["shots"].sort(key=lambda s: s["take_id"])
    eps = sorted(episodes.values(), key=lambda e: _episode_order(e["episode"]))
    return {"report_version": REPORT_VERSION, "series": series, "run": run["id"], "started_at": run["started_at"],
            "finished_at": run["finished_at"], "status": run["status"], "episodes": eps,
            "characters": _characters(reg, finals, [e["episode"] for e in eps])}


def _episode_order(ep: str) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", ep))


def _take_count(reg: Registry, t: dict[str, Any]) -> int:
    return reg.db.execute("select count(*) from takes where run_id = ? and shot_id = ?", [t["run_id"], t["shot_id"]]).fetchone()[0]


def _shot(reg: Registry, t: dict[str, Any], takes: int) -> dict[str, Any]:
    cols = set(t)
    chars = []
    for c in reg.db.query("select * from character_scores where take_id = ? order by id", [t["id"]]):
        chars.append({"character": c["handle"], "encoder": c["encoder"], "bound": c["bound"],
                      "bound_source": c.get("bound_source"), "frames_scored": c["frames_scored"],
                      "frames_missing": c["frames_missing"], "frames_drifted": c["frames_drifted"], "mean": c["mean"],
                      "min": c["min"], "p5": c["p5"], "centroid_mean": c.get("centroid_mean"),
                      "subject_consistency": c.get("subject_consistency")})
    scored = [c for c in chars if c["mean"] is not None]
    return {
        "shot": t["shot_id"], "episode": t["episode_id"], "take_id": t["id"], "takes": takes,
        "take_used": t["take"] if t["decision"] in ACCEPTED else None,
        "seed": t["seed"], "backend": t["backend"], "mode": t["mode"], "path": t["path"],
        "frames": t["num_frames"], "fps": t["fps"], "keep": [t["keep_start"], t["keep_end"]],
        "verdict": t["decision"], "reason": t["reason"],
        "frames_scored": sum(c["frames_scored"] for c in chars),
        "mean": min((c["mean"] for c in scored), default=None),
        "min": min((c["min"] for c in scored), default=None),
        "p5": min((c["p5"] for c in scored), default=None),
        "subject_consistency": min((c["subject_consistency"] for c in chars if c["subject_consistency"] is not None), default=None),
        "flicker": t["flicker"] if "flicker" in cols else None,
        "findings": json.loads(t["findings"]) if "findings" in cols and t["findings"] else [],
        # the creator's decision honoured for this take ({take, action, reason, at, source}), or None (issue 15;
        # the HTML report should show it next to the verdict)
        "human": json.loads(t["human"]) if t.get("human") else None,
        "anonymized": _anonymized(reg, t),
        "characters": chars,
    }


def _anonymized(reg: Registry, t: dict[str, Any]) -> dict[str, Any] | None:
    """What the take's anonymisation did (``{"faces", "frames": [[a, b], ...], ...}``), from its cache entry;
    when that is gone, from the finding the checker stored (no registry column needed)."""
    if t.get("cache_key") and reg.workspace is not None:
        from .cache import TakeCache

        try:
            entry = TakeCache(reg.workspace.series_dir(t["series"]) / "cache").get(t["cache_key"])
        except ValueError:
            entry = None
        if entry is not None:
            return entry.meta.get("anonymized")
    import re

    for f in json.loads(t.get("findings") or "[]"):
        m = re.fullmatch(r"anonymised (\d+) bystander face\(s\) in frames (.+)", f)
        if m:
            frames = [[int(x) for x in r.split("–")] * (1 if "–" in r else 2) for r in m.group(2).split(", ")]
            return {"faces": int(m.group(1)), "frames": frames, "summary": f}
    return None


def _characters(reg: Registry, finals: list[dict[str, Any]], episode_order: list[str]) -> list[dict[str, Any]]:
    """Per character and encoder: each episode's accepted frames against the registry, and episode to episode."""
    acc: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for t in finals:
        if t["decision"] not in ACCEPTED:
            continue
        for c in reg.db.query("select * from character_scores where take_id = ?", [t["id"]]):
            frames = [f for f in accepted_frames(reg, t, c["handle"]) if f["encoder"] == c["encoder"]]
            e = acc.setdefault((c["handle"], c["encoder"]), {}).setdefault(
                t["episode_id"], {"sims": [], "vec": None, "n": 0, "shots": 0, "bound": c["bound"]})
            e["sims"] += [f["similarity"] for f in frames if f["similarity"] is not None]
            e["shots"] += 1
            e["bound"] = min(e["bound"], c["bound"]) if e["bound"] is not None else c["bound"]
            mv = c.get("mean_vector")
            if mv:
                v = np.asarray(json.loads(mv), dtype=np.float64) * max(1, c["frames_scored"] or 0)
                e["vec"] = v if e["vec"] is None else e["vec"] + v
    out = []
    for (handle, enc), by_ep in sorted(acc.items()):
        rows, first, prev = [], None, None
        for ep in [e for e in episode_order if e in by_ep]:
            e = by_ep[ep]
            sims = np.asarray(e["sims"], dtype=np.float64)
            v = e["vec"] / np.linalg.norm(e["vec"]) if e["vec"] is not None and np.linalg.norm(e["vec"]) > 0 else None
            rows.append({"episode": ep, "shots": e["shots"], "frames": int(sims.size), "bound": e["bound"],
                         "mean": _r(sims.mean()) if sims.size else None, "min": _r(sims.min()) if sims.size else None,
                         "p5": _r(np.percentile(sims, 5)) if sims.size else None,
                         "to_previous": _r(float(v @ prev)) if v is not None and prev is not None else None,
                         "to_first": _r(float(v @ first)) if v is not None and first is not None else None})
            if v is not None:
                first = v if first is None else first
                prev = v
        means = [r["mean"] for r in rows if r["mean"] is not None]
        links = [r["to_previous"] for r in rows if r["to_previous"] is not None]
        out.append({"character": handle, "encoder": enc, "episodes": rows,
                    "mean": _r(np.mean(means)) if means else None, "worst_episode_mean": min(means) if means else None,
                    "min_episode_to_episode": min(links) if links else None,
                    "bound": min((r["bound"] for r in rows if r["bound"] is not None), default=None)})
    return out


def fail_under(report: dict[str, Any], score: float) -> list[str]:
    """What falls under ``score``: accepted shots whose mean similarity (any character) does, and characters
    whose mean over the series does. An empty list passes the gate."""
    out = []
    for ep in report["episodes"]:
        for sh in ep["shots"]:
            if sh["verdict"] not in ACCEPTED:
                continue
            for c in sh["characters"]:
                if c["mean"] is not None and c["mean"] < score:
                    out.append(f"shot {sh['shot']} ({ep['episode']}): {c['character']} mean {c['mean']:.3f} < {score:g}")
    for c in report.get("characters", []):
        if c["mean"] is not None and c["mean"] < score:
            out.append(f"character {c['character']} ({c['encoder']}): series mean {c['mean']:.3f} < {score:g}")
    return out
