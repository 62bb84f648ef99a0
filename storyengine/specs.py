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


ANONYMIZE_MODES = ("none", "bystanders", "all-but")  # kept equal to storyengine.anonymize.MODES (tested)
AnonymizeSetting = str | dict[str, list[str]] | None


def _check_anonymize(v: AnonymizeSetting) -> AnonymizeSetting:
    """``none`` | ``bystanders`` | ``{all-but: [handle, ...]}`` (None: inherited)."""
    if v is None:
        return v
    if isinstance(v, str):
        if v not in ("none", "bystanders"):
            hint = "; `all-but` takes a list: `anonymize: {all-but: [mara]}`" if v == "all-but" else ""
            raise ValueError(f"unknown anonymize mode {v!r}; use none, bystanders or {{all-but: [handles]}}{hint}")
        return v
    if set(v) != {"all-but"}:
        raise ValueError(f"anonymize as a mapping takes exactly one key, `all-but`, got {sorted(v)}")
    for h in v["all-but"]:
        if not HANDLE_RE.fullmatch(h):
            raise ValueError(f"character handle {h!r} in anonymize.all-but must be a lowercase slug")
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
    on_beat: bool = Field(True, description="Move this cut to the nearest earlier mark in the episode's `beats` (if any).")


MOODS = ("neutral", "warm", "distant", "uneasy")  # kept equal to storyengine.finishing.MOODS (tested)


class Caption(_Strict):
    """Text over a shot: ``start`` seconds into the shot, for ``duration`` seconds (default: to the shot's end)."""

    text: str = Field(min_length=1, max_length=200)
    position: Literal["bottom", "top", "center"] = "bottom"
    start: float = Field(0.0, ge=0.0)
    duration: float | None = Field(None, gt=0.0)


class EndCard(_Strict):
    """A closing card after the last shot."""

    text: str = Field(min_length=1, max_length=120)
    duration: float = Field(2.0, gt=0.0, le=10.0)


class Grade(_Strict):
    """Simple colour controls; the defaults change nothing."""

    exposure: float = Field(0.0, ge=-3.0, le=3.0, description="Stops.")
    contrast: float = Field(1.0, ge=0.0, le=3.0, description="Around mid-grey; 1 = unchanged.")
    saturation: float = Field(1.0, ge=0.0, le=3.0, description="0 = grey, 1 = unchanged.")
    temperature: float = Field(0.0, ge=-1.0, le=1.0, description="-1 cool … +1 warm.")
    tint: float = Field(0.0, ge=-1.0, le=1.0, description="-1 green … +1 magenta.")


class Finish(_Strict):
    """Finishing applied identically to every clip of an episode: grade, .cube LUT, upscale + sharpen."""

    width: int | None = Field(None, ge=16, le=7680, description="Delivery width (default: the series width).")
    height: int | None = Field(None, ge=16, le=4320, description="Delivery height (default: the series height).")
    resample: Literal["lanczos", "bicubic", "model"] = "lanczos"
    upscaler: str | None = Field(None, description="Name of a registered model upscaler (resample: model).")
    sharpen: float = Field(0.0, ge=0.0, le=3.0, description="Unsharp-mask amount after resampling (0 = none).")
    lut: str | None = Field(None, description="A .cube 3D LUT, relative to the spec file.")
    lut_strength: float = Field(1.0, ge=0.0, le=1.0)
    grade: Grade = Field(default_factory=Grade)

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int | None) -> int | None:
        if v is not None and v % 2:
            raise ValueError(f"must be even for H.264 yuv420p, got {v}")
        return v

    @field_validator("lut")
    @classmethod
    def _cube(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().endswith(".cube"):
            raise ValueError(f"a LUT must be a .cube file, got {v!r}")
        return v

    @model_validator(mode="after")
    def _upscaler_named(self) -> "Finish":
        if self.resample == "model" and not self.upscaler:
            raise ValueError("resample: model needs `upscaler:` (the name of a registered model upscaler)")
        return self


AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")


class ShotSpec(_Strict):
    """One shot: a still extended into a short clip."""

    id: str
    still: str = Field(description="Path to the still, relative to the spec file; `previous`: the previous shot's last accepted frame.")
    characters: list[str] = Field(default_factory=list, description="Handles of the characters in the shot.")
    duration: float = Field(4.0, gt=0.0, le=60.0, description="Seconds.")
    min_duration: float | None = Field(None, gt=0.0, description="Shortest clip a trim may keep (default 60% of duration).")
    prompt: str = ""
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    bound: float | None = Field(None, ge=-1.0, le=1.0, strict=True,
                                description="Override of the acceptance bound for this shot.")
    options: dict[str, Any] = Field(default_factory=dict, description="Back-end options for this shot.")
    ambience: str | None = Field(None, description="Ambience under this shot (default: the episode's).")
    audio: str | None = Field(None, description="A sound file under this shot instead of the ambience, relative to the spec file.")
    transition: Transition | None = Field(None, description="The cut into this shot (default: the episode's transition).")
    captions: list[Caption] = Field(default_factory=list)
    takes: int = Field(1, ge=1, le=8, description="Takes rendered with different seeds; the best-scoring accepted one is used.")
    moods: list[str] = Field(default_factory=list, description="Mood preset per take, cycled (neutral | warm | distant | uneasy).")
    take: int | None = Field(None, ge=1, le=8, description="Pin take N: the episode uses it whatever the checker says "
                             "(a human decision, recorded in the report and the episode's C2PA manifest).")
    anonymize: AnonymizeSetting = Field(None, description="none | bystanders | {all-but: [handles]} (default: the episode's).")
    keep_faces: list[int | list[int]] = Field(default_factory=list, description=(
        "Faces in the still that consented and stay recognisable: an index (0 = leftmost face dlib finds in the "
        "still) or a box [x0, y0, x1, y1] in still pixels."))

    @field_validator("anonymize")
    @classmethod
    def _anonymize(cls, v: AnonymizeSetting) -> AnonymizeSetting:
        return _check_anonymize(v)

    @field_validator("keep_faces")
    @classmethod
    def _keep_faces(cls, v: list[int | list[int]]) -> list[int | list[int]]:
        for f in v:
            if isinstance(f, int):
                if f < 0:
                    raise ValueError(f"a face index must be >= 0, got {f}")
            elif len(f) != 4 or f[2] <= f[0] or f[3] <= f[1]:
                raise ValueError(f"a face box is [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {f}")
        return v

    @field_validator("ambience")
    @classmethod
    def _ambience(cls, v: str | None) -> str | None:
        return _check_ambience(v) if v is not None else v

    @field_validator("audio")
    @classmethod
    def _audio_file(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().endswith(AUDIO_SUFFIXES):
            raise ValueError(f"audio file {v!r} must end in one of {', '.join(AUDIO_SUFFIXES)}")
        return v

    @field_validator("moods")
    @classmethod
    def _moods(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in MOODS:
                raise ValueError(f"unknown mood {m!r}; available: {', '.join(MOODS)}")
        return v

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
    end_card: EndCard | None = None
    beats: list[float] = Field(default_factory=list, description="Marks (seconds from the episode start) that cuts snap to.")
    finish: Finish | None = Field(None, description="Overrides the series' finish for this episode.")
    anonymize: AnonymizeSetting = Field(None, description="none | bystanders | {all-but: [handles]} (default: the series').")

    @field_validator("anonymize")
    @classmethod
    def _anonymize(cls, v: AnonymizeSetting) -> AnonymizeSetting:
        return _check_anonymize(v)

    @field_validator("beats")
    @classmethod
    def _beats(cls, v: list[float]) -> list[float]:
        if any(b < 0 for b in v):
            raise ValueError(f"beats must be >= 0 seconds, got {v}")
        return sorted(v)
    shots: list[ShotSpec] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _is_slug(cls, v: str) -> str:
        return _slug(v, "episode id")

    @field_validator("shots")
    @classmethod
    def _first_shot_has_a_still(cls, v: list[ShotSpec]) -> list[ShotSpec]:
        if v and v[0].still == "previous":
            raise ValueError(f"shot {v[0].id!r} opens the episode, so `still: previous` has no shot to continue from; give it a still")
        return v


class SeriesSpec(_Strict):
    """A series: its defaults and episodes."""

    series: str
    title: str = ""
    backend: str = "motion"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    fps: int = Field(24, ge=1, le=120)
    width: int = Field(640, ge=16, le=7680)
    height: int = Field(360, ge=16, le=4320)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    finish: Finish = Field(default_factory=Finish, description="Finishing for every episode (an episode's `finish` replaces it).")
    anonymize: AnonymizeSetting = Field(None, description="none (default) | bystanders | {all-but: [handles]}: faces that were not cast.")
    episodes: list[EpisodeSpec] = Field(min_length=1)

    @field_validator("anonymize")
    @classmethod
    def _anonymize(cls, v: AnonymizeSetting) -> AnonymizeSetting:
        return _check_anonymize(v)

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
    consent: str = Field("", description="The registry's consent note (what the person agreed to).")
    licence: str = Field("", description="The registry's licence note for the photos.")


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
    generation_frames: int | None = Field(None, description="Frames the model generates (its native timing; chained segments joined).")
    generation_fps: int | None = Field(None, description="The rate the model generates at; frames are retimed to `fps`.")
    bound: float | None = None
    backend: str
    backend_options: dict[str, Any] = Field(default_factory=dict)
    conditioning: list[str] = Field(default_factory=list, description="What conditions the back-end: still, lora:<handle>, …")
    continues_from: str | None = Field(None, description="Shot id whose last accepted frame becomes this shot's still (`still: previous`).")
    takes: int = Field(1, ge=1, description="Takes the shot asks for (the best-scoring accepted one is used).")
    moods: list[str] = Field(default_factory=list, description="Mood preset per take, cycled.")
    # the creator's decisions (issue 15): a pinned take (spec `take: N` or `storyengine takes use`), and
    # accept/reject decisions from the registry ({take, action, reason, at, cache_key, source}); not part of any take key
    pinned_take: int | None = None
    take_decisions: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="Warnings for the user (e.g. the still's resize policy).")
    anonymize: Literal["none", "bystanders", "all-but"] = "none"
    anonymize_keep: list[str] = Field(default_factory=list, description="all-but: the handles left recognisable.")
    keep_faces: list[tuple[int, int, int, int]] = Field(default_factory=list, description="Consenting faces: boxes in still pixels.")

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
    centroid: float | None = None  # similarity to the centroid of the registered vectors
    # how the face/subject was found in full mode; "reverified": a tracked/reused score below the bound,
    # detected and embedded again from scratch before it counted (issue 15)
    source: Literal["detected", "tracked", "reused", "reverified"] | None = None
    lookalike: str | None = None  # a cohort identity at least as similar as the character's own references (issue 15)


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
    centroid_mean: float | None = None
    subject_consistency: float | None = None  # VBench-style: cosine to the first and previous frame, averaged
    bound_source: str | None = None
    mode: str | None = None
    mean_vector: list[float] | None = None  # mean embedding of the scored frames (episode-to-episode comparison)


class Verdict(_Strict):
    """The checker's decision on one take, with the numbers behind it."""

    decision: Literal["accept", "trim", "retry", "reject"]
    reason: str
    keep_start: int = 0
    keep_end: int = Field(description="Exclusive end frame of the kept range.")
    summaries: list[CharacterSummary] = Field(default_factory=list)
    mode: str | None = None  # the check mode that produced the scores: full | sampled
    flicker: float | None = None  # mean absolute difference of consecutive frames, 0-1
    findings: list[str] = Field(default_factory=list)  # e.g. long runs of frames where a character is not visible
