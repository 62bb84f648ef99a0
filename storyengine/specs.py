"""Pydantic models for everything that crosses a stage boundary.

``SeriesSpec`` / ``EpisodeSpec`` / ``ShotSpec`` are what a user writes in YAML;
``ShotPlan`` is what the planner hands a back-end; ``FrameScore`` and ``Verdict`` are
what the checker hands the renderer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .workspace import HANDLE_RE, SLUG_RE


AMBIENCES = ("carriage", "platform", "rain", "room")  # kept equal to storyengine.audio.AMBIENCES (tested)


def _check_ambience(v: str) -> str:
    if v not in AMBIENCES:
        raise ValueError(f"unknown ambience {v!r}; available: {', '.join(AMBIENCES)}")
    return v


def _slug(v: str, what: str) -> str:
    if not SLUG_RE.fullmatch(v):
        raise ValueError(f"{what} {v!r} must be a lowercase slug (letters, digits, '-', '_')")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Transition(_Strict):
    """How one shot hands over to the next."""

    type: Literal["cut", "crossfade", "dip-to-black"] = "crossfade"
    duration: float = Field(0.75, ge=0.0, le=5.0)


class ShotSpec(_Strict):
    """One shot: a still extended into a short clip."""

    id: str
    still: str = Field(description="Path to the still, relative to the spec file.")
    characters: list[str] = Field(default_factory=list, description="Handles of the characters in the shot.")
    duration: float = Field(4.0, gt=0.0, le=60.0, description="Seconds.")
    min_duration: float | None = Field(None, gt=0.0, description="Shortest clip a trim may keep (default 60% of duration).")
    prompt: str = ""
    seed: int | None = Field(None, ge=0)
    bound: float | None = Field(None, ge=-1.0, le=1.0, description="Override of the acceptance bound for this shot.")
    options: dict[str, Any] = Field(default_factory=dict, description="Back-end options for this shot.")
    ambience: str | None = Field(None, description="Ambience under this shot (default: the episode's).")

    @field_validator("ambience")
    @classmethod
    def _ambience(cls, v: str | None) -> str | None:
        return _check_ambience(v) if v is not None else v

    @field_validator("id")
    @classmethod
    def _is_slug(cls, v: str) -> str:
        return _slug(v, "shot id")

    @field_validator("characters")
    @classmethod
    def _handles(cls, v: list[str]) -> list[str]:
        for h in v:
            if not HANDLE_RE.fullmatch(h):
                raise ValueError(f"character handle {h!r} must be a lowercase slug")
        if len(set(v)) != len(v):
            raise ValueError(f"a character is listed twice: {v}")
        return v

    @model_validator(mode="after")
    def _min_le_duration(self) -> "ShotSpec":
        if self.min_duration is not None and self.min_duration > self.duration:
            raise ValueError(f"min_duration {self.min_duration} is longer than duration {self.duration}")
        return self


class EpisodeSpec(_Strict):
    """One episode: shots stitched in order."""

    id: str
    title: str = ""
    ambience: str = "carriage"

    @field_validator("ambience")
    @classmethod
    def _ambience(cls, v: str) -> str:
        return _check_ambience(v)
    transition: Transition = Field(default_factory=Transition)
    title_duration: float = Field(2.0, ge=0.0, le=10.0)
    shots: list[ShotSpec] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _is_slug(cls, v: str) -> str:
        return _slug(v, "episode id")


class SeriesSpec(_Strict):
    """A series: its defaults and episodes."""

    series: str
    title: str = ""
    backend: str = "motion"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    fps: int = Field(24, ge=1, le=120)
    width: int = Field(640, ge=16, le=7680)
    height: int = Field(360, ge=16, le=4320)
    seed: int = Field(0, ge=0)
    episodes: list[EpisodeSpec] = Field(min_length=1)

    @field_validator("series")
    @classmethod
    def _is_slug(cls, v: str) -> str:
        return _slug(v, "series name")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even for H.264 yuv420p, got {v}")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> "SeriesSpec":
        seen: set[str] = set()
        for ep in self.episodes:
            if ep.id in seen:
                raise ValueError(f"duplicate episode id {ep.id!r}")
            seen.add(ep.id)
        shots: set[str] = set()
        for ep in self.episodes:
            for shot in ep.shots:
                if shot.id in shots:
                    raise ValueError(f"duplicate shot id {shot.id!r} (episode {ep.id!r})")
                shots.add(shot.id)
        return self


class CharacterRef(_Strict):
    """What a shot plan knows of a character: enough to condition a back-end and to check a clip."""

    handle: str
    name: str
    kind: Literal["person", "pet", "object", "drawn"]
    photos: list[str] = Field(default_factory=list, description="Absolute paths of the registered photos.")
    adapters: list[dict[str, Any]] = Field(default_factory=list)


class ShotPlan(_Strict):
    """A resolved shot: everything a back-end needs to render it, and nothing it must look up."""

    series: str
    episode_id: str
    shot_id: str
    index: int = Field(description="Position of the shot inside its episode.")
    still: str = Field(description="Absolute path of the still image.")
    characters: list[CharacterRef]
    prompt: str
    seed: int
    take: int = 0
    fps: int
    width: int
    height: int
    num_frames: int
    duration: float
    min_frames: int
    bound: float | None = None
    backend: str
    backend_options: dict[str, Any] = Field(default_factory=dict)
    conditioning: list[str] = Field(default_factory=list, description="What conditions the back-end: still, lora:<handle>, …")

    @property
    def still_path(self) -> Path:
        return Path(self.still)


class FrameScore(_Strict):
    """Similarity of one character in one frame; ``similarity`` is None when the character was not found."""

    index: int
    time: float
    character: str
    encoder: str
    similarity: float | None
    box: tuple[int, int, int, int] | None = None
    drifted: bool = False


class CharacterSummary(_Strict):
    handle: str
    encoder: str
    bound: float
    frames_scored: int
    frames_missing: int
    frames_drifted: int
    mean: float | None
    min: float | None
    p5: float | None


class Verdict(_Strict):
    """The checker's decision on one take, with the numbers behind it."""

    decision: Literal["accept", "trim", "retry", "reject"]
    reason: str
    keep_start: int = 0
    keep_end: int = Field(description="Exclusive end frame of the kept range.")
    summaries: list[CharacterSummary] = Field(default_factory=list)
