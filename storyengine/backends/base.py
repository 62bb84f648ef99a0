"""The VideoBackend protocol: a ShotPlan in, a streamed Clip out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..specs import ShotPlan

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

    def generate(self, plan: ShotPlan, progress: Progress | None = None) -> Clip:
        raise NotImplementedError
