"""Registry runs → the consistency report (a dict that becomes JSON; the CLI draws the table)."""

from __future__ import annotations

import json
from typing import Any

from .errors import RegistryError
from .registry import Registry

REPORT_VERSION = 1


def build_report(reg: Registry, series: str, run_id: int | None = None) -> dict[str, Any]:
    """Per shot of the series' latest run (or ``run_id``): the final take's verdict and scores.

    Stable field names (documented in docs/report.md): ``series``, ``run``, ``episodes[]`` with
    ``shots[]``: ``shot``, ``episode``, ``takes``, ``verdict``, ``reason``, ``characters[]``
    (``character``, ``encoder``, ``bound``, ``frames_scored``, ``frames_missing``,
    ``frames_drifted``, ``mean``, ``min``, ``p5``).
    """
    run = (list(reg.db.query("select * from runs where id = ?", [run_id])) or [None])[0] if run_id else reg.latest_run(series)
    if not run:
        known = ", ".join(reg.series_names()) or "none"
        raise RegistryError(f"no render of series {series!r} is recorded (series rendered here: {known})")
    takes = list(reg.db.query("select * from takes where run_id = ? order by id", [run["id"]]))
    by_shot: dict[str, list[dict[str, Any]]] = {}
    order: list[tuple[str, str]] = []
    for t in takes:
        if t["shot_id"] not in by_shot:
            order.append((t["episode_id"], t["shot_id"]))
        by_shot.setdefault(t["shot_id"], []).append(t)
    episodes: dict[str, dict[str, Any]] = {}
    for ep_row in reg.db.query("select * from episodes where run_id = ? order by id", [run["id"]]):
        episodes[ep_row["episode_id"]] = {"episode": ep_row["episode_id"], "path": ep_row["path"],
                                          "duration": round(ep_row["duration"], 3), "frames": ep_row["frames"],
                                          "shots_used": json.loads(ep_row["shots_used"]),
                                          "shots_rejected": json.loads(ep_row["shots_rejected"]), "shots": []}
    for ep_id, shot_id in order:
        ts = by_shot[shot_id]
        final = ts[-1]
        chars = [
            {"character": c["handle"], "encoder": c["encoder"], "bound": c["bound"], "frames_scored": c["frames_scored"],
             "frames_missing": c["frames_missing"], "frames_drifted": c["frames_drifted"], "mean": c["mean"],
             "min": c["min"], "p5": c["p5"]}
            for c in reg.db.query("select * from character_scores where take_id = ? order by id", [final["id"]])
        ]
        ep = episodes.setdefault(ep_id, {"episode": ep_id, "path": None, "duration": None, "frames": None,
                                          "shots_used": [], "shots_rejected": [], "shots": []})
        ep["shots"].append({
            "shot": shot_id, "episode": ep_id, "takes": len(ts), "take_used": final["take"] if final["decision"] in ("accept", "trim") else None,
            "seed": final["seed"], "backend": final["backend"], "mode": final["mode"],
            "frames": final["num_frames"], "keep": [final["keep_start"], final["keep_end"]],
            "verdict": final["decision"], "reason": final["reason"], "characters": chars,
        })
    return {"report_version": REPORT_VERSION, "series": series, "run": run["id"], "started_at": run["started_at"],
            "finished_at": run["finished_at"], "status": run["status"], "episodes": list(episodes.values())}
