"""The VideoBackend protocol: a ShotPlan in, a streamed Clip out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..specs import CharacterRef, ShotPlan

Progress = Callable[[int, int], None]
"""``progress(done, total)``; called as frames are produced."""


@dataclass
class Clip:
    """A rendered take: metadata plus a single-use stream of RGB uint8 HxWx3 frames.

    Frames are produced lazily so that a series never sits in memory; consume ``frames``
    exactly once (the renderer writes them straight to a file).
    """

    fps: int
    width: int
    height: int
    num_frames: int
    frames: Iterator[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


class VideoBackend:
    """Base class for video back-ends.

    A back-end sets the class attributes, declares its settings as a nested pydantic
    ``Options`` model (unknown keys are refused) and implements :meth:`generate`.
    Heavy components (pipelines, weights) are built or passed in ``__init__`` so tests can
    hand in tiny ones.
    """

    backend_id: ClassVar[str]
    version: ClassVar[str] = "0"
    supports_lora: ClassVar[bool] = False
    supports_reference_images: ClassVar[bool] = False
    max_characters: ClassVar[int | None] = None
    reads_prompt: ClassVar[bool] = False  # True: the prompt is parsed into motions (see describe_motion)
    postprocessable: ClassVar[bool] = True  # its frames pass through storyengine (anonymize: may edit them)
    # True: CPU-bound and small, so `executor = "auto"` may run one copy per CPU in worker processes
    # (never for a model that fills the GPU: N copies of it would not fit)
    parallel_processes: ClassVar[bool] = False
    digital_source_type: ClassVar[str] = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, options: "VideoBackend.Options | dict[str, Any] | None" = None) -> None:
        if options is None:
            options = {}
        if isinstance(options, dict):
            options = self.Options(**options)
        self.options = options

    def options_for(self, plan: ShotPlan) -> "VideoBackend.Options":
        """This back-end's options with the plan's per-shot overrides applied (validated)."""
        merged = {**self.options.model_dump(), **plan.backend_options}
        return self.Options(**merged)

    # -- What the planner asks before anything loads (class-level: no weights needed) ----------

    @classmethod
    def frame_step_for(cls, options: "VideoBackend.Options") -> int:
        """Valid frame counts are ``step·k + 1`` for this model family; 1 means any count."""
        return 1

    @classmethod
    def planned_num_frames(cls, n: int, options: "VideoBackend.Options") -> int:
        """The frame count to plan for a shot of ``n`` frames: the smallest valid count ≥ ``n``."""
        step = cls.frame_step_for(options)
        return n if step <= 1 or (n - 1) % step == 0 else ((n - 1) // step + 1) * step + 1

    @classmethod
    def planned_conditioning(cls, characters: list[CharacterRef], options: "VideoBackend.Options") -> list[str]:
        """The labels :meth:`generate` will put in ``clip.meta["conditioning"]`` for these characters."""
        return ["still"]

    @classmethod
    def describe_motion(cls, plan: ShotPlan) -> dict[str, Any]:
        """What this back-end reads in ``plan.prompt``, for ``storyengine plan`` (class-level: loads nothing).

        A back-end that parses the prompt (``reads_prompt``) returns ``read_as``, ``ignored`` words,
        ``resolved`` contradictions and ``skipped`` motions; the default says the prompt is not parsed.
        """
        return {"reads_prompt": False,
                "read_as": "prompt not parsed into motions by this back-end (a text-conditioned model takes it as conditioning)",
                "ignored": [], "negated": [], "resolved": [], "skipped": []}

    def soften(self, options: dict[str, Any], attempt: int) -> tuple[dict[str, Any], str]:
        """Per-shot options for the take after ``attempt`` rejected takes, and a note saying what changed.

        The default changes nothing (the retry only draws a new seed); a back-end whose motion can make
        a face unrecognisable returns smaller motion here (the note reaches the take's record).
        """
        return dict(options), ""

    def generate(self, plan: ShotPlan, progress: Progress | None = None) -> Clip:
        raise NotImplementedError


def motion_warnings(described: dict[str, Any]) -> list[str]:
    """Lines for the user from :meth:`VideoBackend.describe_motion`: ignored words, contradictions, skips."""
    out = []
    if described.get("ignored"):
        out.append("ignored: " + ", ".join(f'"{w}"' for w in described["ignored"]))
    out += [f"not done (negated): {w!r}" for w in described.get("negated", [])]
    out += [f"resolved: {r}" for r in described.get("resolved", [])]
    out += list(described.get("notes", []))
    if described.get("skipped") and not described.get("notes"):
        out.append("skipped: " + ", ".join(described["skipped"]))
    return out


def prompt_with_triggers(prompt: str, characters: list[CharacterRef]) -> str:
    """``prompt`` with any missing adapter trigger words put in front, in the order of the characters.

    A trigger counts as present when it appears as a whole word (case-insensitive), so the
    planner and a back-end can both apply this without doubling words.
    """
    prompt = prompt.strip()
    missing: list[str] = []
    for char in characters:
        for adapter in char.adapters:
            trigger = str(adapter.get("trigger") or "").strip()
            if not trigger:
                continue
            pattern = r"(?<![\w])" + re.escape(trigger) + r"(?![\w])"
            if not re.search(pattern, prompt, flags=re.IGNORECASE) and trigger not in missing:
                missing.append(trigger)
    return ", ".join(missing + ([prompt] if prompt else []))
