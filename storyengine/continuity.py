"""Continuity between shots: a shot with ``still: previous`` starts from the previous shot's last accepted frame.

A glance at the end of one shot then resolves in the next: the continuing shot's still is the
last frame of the range the checker kept (``verdict.keep_end - 1``) of the take that went into
the episode, written as a PNG to ``renders/<series>/stills/<shot>-last.png``. That PNG is an
ordinary still, so every back-end (the weight-free motion one included) takes it unchanged.

When the predecessor was rejected (no take kept) the continuing shot falls back to the still
the predecessor itself started from, and its conditioning says so
(``still:fallback:<shot>`` instead of ``still:previous:<shot>``).

The planner emits shots in an order where a predecessor always comes first; :func:`chains`
groups plans into sequences that must render one after another (independent chains may run
side by side).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from . import media
from .errors import MediaError, StoryEngineError
from .specs import ShotPlan, Verdict
from .workspace import atomic_path


class Rendered(Protocol):
    """What the renderer knows of a finished shot (``shots.ShotResult`` fits)."""

    plan: ShotPlan
    verdict: Verdict
    path: Path | None


def chains(plans: list[ShotPlan]) -> list[list[ShotPlan]]:
    """Group plans into continuity chains, each in render order; plans keep their relative order.

    Raises:
        StoryEngineError: a plan continues from a shot that is not planned before it.
    """
    chain_of: dict[str, list[ShotPlan]] = {}
    out: list[list[ShotPlan]] = []
    for plan in plans:
        if plan.continues_from is None:
            chain = [plan]
            out.append(chain)
        else:
            chain = chain_of.get(plan.continues_from)
            if chain is None:
                raise StoryEngineError(
                    f"shot {plan.shot_id!r} continues from {plan.continues_from!r}, which is not planned before it"
                )
            chain.append(plan)
        chain_of[plan.shot_id] = chain
    return out


def last_accepted_frame(take: Path, keep_end: int, out_png: Path) -> Path:
    """Write frame ``keep_end - 1`` of the video ``take`` to ``out_png`` (atomically) and return the path.

    Raises:
        MediaError: the take is missing or has fewer than ``keep_end`` frames.
    """
    from PIL import Image

    if keep_end < 1:
        raise MediaError(f"{take}: no accepted frame (keep_end {keep_end})")
    last: np.ndarray | None = None
    count = 0
    for frame in media.iter_frames(take, max_frames=keep_end):
        last, count = frame, count + 1
    if last is None or count < keep_end:
        raise MediaError(f"{take}: has {count} frame(s), the accepted range ends at frame {keep_end}")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        Image.fromarray(last).save(tmp, format="PNG")
    return out_png


def continue_from(plan: ShotPlan, predecessor: Rendered, stills_dir: Path) -> ShotPlan:
    """``plan`` with its still replaced by the predecessor's last accepted frame (a copy; ``plan`` is unchanged).

    Args:
        plan: a plan with ``continues_from`` set.
        predecessor: the rendered shot it continues from (its plan as rendered, verdict and kept take).
        stills_dir: where the extracted frame goes (``renders/<series>/stills``).
    """
    if plan.continues_from != predecessor.plan.shot_id:
        raise StoryEngineError(
            f"shot {plan.shot_id!r} continues from {plan.continues_from!r}, not from {predecessor.plan.shot_id!r}"
        )
    label = f"still:previous:{plan.continues_from}"
    if predecessor.path is not None and predecessor.verdict.decision in ("accept", "trim"):
        still = last_accepted_frame(predecessor.path, predecessor.verdict.keep_end,
                                    stills_dir / f"{predecessor.plan.shot_id}-last.png")
        new_label = label
    else:  # rejected: start where the predecessor started
        still = Path(predecessor.plan.still)
        new_label = f"still:fallback:{plan.continues_from}"
    conditioning = [new_label if c == label else c for c in plan.conditioning]
    return plan.model_copy(update={"still": str(still), "conditioning": conditioning})
