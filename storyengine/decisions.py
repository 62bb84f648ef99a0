"""The creator's decisions on takes: use take N, accept a take the checker rejected, reject one it accepted.

Recorded in the registry table ``take_decisions`` (series, shot, take, action, reason, time and
the take's frame key ``cache_key``) by ``storyengine takes use|accept|reject``, and honoured by the
next render without regenerating anything: the takes are in the content-addressed take cache.

* ``use N``: the episode uses take N whatever the checker says (the spec's ``take: N`` does the
  same and wins over a recorded ``use``); the shot's other cached takes are listed, none generated.
* ``accept N``: take N counts as accepted (its whole length) even if the checker rejected it.
* ``reject N``: take N counts as rejected even if the checker accepted it; the shot moves on to
  its next take (from the cache when it was rendered before).

A decision is bound to the frames it was made on: when the shot's inputs changed since (another
prompt, still, seed …), take N is another video, and the decision is reported and not applied.
The latest decision per take wins; a ``use`` stands until another ``use`` or a ``reject`` of that take.
"""

from __future__ import annotations

from typing import Any

from .errors import RegistryError, StoryEngineError
from .registry import Registry, now
from .specs import ShotPlan

ACTIONS = ("use", "accept", "reject")


def _series_of(reg: Registry, shot: str, series: str | None) -> str:
    rows = [r["series"] for r in reg.db.query("select distinct series from takes where shot_id = ? order by series", [shot])]
    if series is not None:
        if series not in rows:
            raise RegistryError(f"no takes of shot {shot!r} in series {series!r} are recorded "
                                f"(series with this shot: {', '.join(rows) or 'none'})")
        return series
    if not rows:
        known = [r["shot_id"] for r in reg.db.query("select distinct shot_id from takes order by shot_id")]
        raise RegistryError(f"no takes of shot {shot!r} are recorded (shots rendered here: {', '.join(known) or 'none'})")
    if len(rows) > 1:
        raise RegistryError(f"shot {shot!r} exists in several series ({', '.join(rows)}): name one with --series")
    return rows[0]


def record(reg: Registry, shot: str, take: int, action: str, reason: str = "", series: str | None = None) -> dict[str, Any]:
    """Record a decision on take ``take`` (1-based) of ``shot``; returns the stored row.

    Raises:
        StoryEngineError: unknown action, or a take that was never rendered (the rendered ones are named).
        RegistryError: unknown shot, or a shot id shared by several series without ``series``.
    """
    if action not in ACTIONS:
        raise StoryEngineError(f"unknown take decision {action!r}; use one of: {', '.join(ACTIONS)}")
    series = _series_of(reg, shot, series)
    rows = list(reg.db.query("select take, cache_key from takes where series = ? and shot_id = ? order by id",
                             [series, shot]))
    keys = {r["take"]: r["cache_key"] for r in rows}  # the latest render of each take
    if take not in keys:
        raise StoryEngineError(f"take {take} of shot {shot!r} was never rendered (rendered takes: "
                               f"{', '.join(str(t) for t in sorted(keys)) or 'none'})")
    row = {"series": series, "shot_id": shot, "take": int(take), "action": action, "reason": reason or "",
           "cache_key": keys[take], "created_at": now()}
    with reg.transaction():
        row["id"] = reg.db["take_decisions"].insert(row).last_pk
    return row


def history(reg: Registry, shot: str, series: str | None = None) -> list[dict[str, Any]]:
    """Every decision on ``shot``, oldest first."""
    if "take_decisions" not in reg.db.table_names():
        return []
    q, args = "select * from take_decisions where shot_id = ?", [shot]
    if series:
        q += " and series = ?"
        args.append(series)
    return list(reg.db.query(q + " order by id", args))


def current(rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
    """From a shot's decisions (oldest first): the standing ``use`` and the latest accept/reject per take."""
    use: dict[str, Any] | None = None
    per_take: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["action"] == "use":
            use = r
        else:
            per_take[r["take"]] = r
            if use is not None and r["take"] == use["take"] and r["action"] == "reject":
                use = None  # rejecting the used take withdraws the use
    return use, per_take


def _decision(r: dict[str, Any], source: str) -> dict[str, Any]:
    return {"take": r["take"], "action": r["action"], "reason": r.get("reason") or "", "at": r.get("created_at"),
            "cache_key": r.get("cache_key"), "source": source}


def apply(reg: Registry, plans: list[ShotPlan]) -> list[ShotPlan]:
    """``plans`` with the recorded decisions attached (``pinned_take``, ``take_decisions``); the spec's ``take:`` wins."""
    out = []
    for p in plans:
        use, per_take = current(history(reg, p.shot_id, p.series))
        decisions = [_decision(r, "takes " + r["action"]) for r in per_take.values()]
        update: dict[str, Any] = {}
        if p.pinned_take is not None:
            decisions.append({"take": p.pinned_take, "action": "use", "reason": "pinned in the spec (take: "
                              f"{p.pinned_take})", "at": None, "cache_key": None, "source": "spec"})
            if use is not None and use["take"] != p.pinned_take:
                update["notes"] = [*p.notes, f"shot {p.shot_id}: the spec pins take {p.pinned_take}; the recorded "
                                   f"`takes use {p.shot_id} {use['take']}` is not applied"]
        elif use is not None:
            decisions.append(_decision(use, "takes use"))
            update["pinned_take"] = use["take"]
        if decisions:
            update["take_decisions"] = sorted(decisions, key=lambda d: (d["take"], d["action"]))
        out.append(p.model_copy(update=update) if update else p)
    return out


def for_take(plan: ShotPlan, take: int, cache_key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The decision that applies to take ``take`` (1-based) with frame key ``cache_key``, and a finding if one was
    made on other frames (the shot's inputs changed since): then it is not applied."""
    found = None
    for d in plan.take_decisions:
        if d["take"] != take:
            continue
        if d["action"] == "use" and plan.pinned_take != take:
            continue
        if d.get("cache_key") and d["cache_key"] != cache_key:
            return None, (f"the creator's `{d['action']}` of take {take} ({d.get('at') or 'earlier'}) was made on other "
                          "frames (the shot's inputs changed since): not applied")
        if found is None or d["action"] == "use":
            found = d
    return found, None


def summary(d: dict[str, Any]) -> str:
    """One line: ``use take 2 (2026-11-29T10:40:00Z): the smile is right``."""
    when = f" ({d['at']})" if d.get("at") else ""
    return f"{d['action']} take {d['take']}{when}{': ' + d['reason'] if d.get('reason') else ''}"
