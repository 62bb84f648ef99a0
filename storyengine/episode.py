"""An episode spec + its rendered shots → the stitched, finished and signed episode.

The renderer calls :func:`check_files` before rendering anything (LUTs and sound files exist and
stay inside the workspace), :func:`credential_for` once per run, :func:`sign_take` after each take
file is final, and :func:`assemble` once an episode's shots are done.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import SpecError, StoryEngineError, UnsafePathError
from .finishing import MOODS, Finisher, mood_baked
from .settings import Settings
from .specs import EpisodeSpec, Finish, SeriesSpec
from .stitch import EpisodeInfo, Segment, stitch_episode
from .workspace import Workspace, inside


# ---------------------------------------------------------------------------
# Files named in the spec
# ---------------------------------------------------------------------------


def _line(spec_path: Path, loc: tuple[Any, ...]) -> str:
    try:
        node = yaml.compose(spec_path.read_text(encoding="utf-8"))
    except Exception:
        return "?"
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == key), None)
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
    return str(node.start_mark.line + 1) if node is not None else "?"


def spec_file(spec_path: Path, ws: Workspace, rel: str, loc: tuple[Any, ...]) -> Path:
    """``rel`` resolved against the spec's folder; SpecError (file:line: field path) unless it exists inside the workspace."""
    spec_path = Path(spec_path)
    where = f"{spec_path}:{_line(spec_path, loc)}: {'.'.join(str(p) for p in loc)}"
    p = (spec_path.resolve().parent / os.path.expanduser(rel))
    try:
        p = inside(ws.root, p)
    except UnsafePathError:
        raise SpecError(f"{where}: {rel!r} is outside the workspace {ws.root}") from None
    if not p.is_file():
        raise SpecError(f"{where}: file not found: {p}")
    return p


def finish_of(spec: SeriesSpec, ep: EpisodeSpec) -> tuple[Finish, tuple[Any, ...]]:
    return (ep.finish, ("episodes", spec.episodes.index(ep), "finish")) if ep.finish else (spec.finish, ("finish",))


def check_files(spec: SeriesSpec, spec_path: Path, ws: Workspace) -> None:
    """Every LUT and sound file the spec names exists inside the workspace (before anything renders)."""
    for e, ep in enumerate(spec.episodes):
        finish, loc = finish_of(spec, ep)
        if finish.lut:
            from .finishing import load_cube

            try:
                load_cube(spec_file(spec_path, ws, finish.lut, loc + ("lut",)))
            except StoryEngineError as err:
                raise SpecError(f"{spec_path}: {'.'.join(map(str, loc + ('lut',)))}: {err}") from None
        for s, shot in enumerate(ep.shots):
            if shot.audio:
                spec_file(spec_path, ws, shot.audio, ("episodes", e, "shots", s, "audio"))


def finisher_for(spec: SeriesSpec, ep: EpisodeSpec, spec_path: Path, ws: Workspace) -> tuple[Finisher, tuple[int, int]]:
    finish, loc = finish_of(spec, ep)
    size = (finish.width or spec.width, finish.height or spec.height)
    lut = spec_file(spec_path, ws, finish.lut, loc + ("lut",)) if finish.lut else None
    return Finisher(finish, size, lut), size


# ---------------------------------------------------------------------------
# Content credentials
# ---------------------------------------------------------------------------


def credential_for(settings: Settings):
    """The configured C2PA credential, else the local development one (created on first use)."""
    from .provenance import ensure_dev_credential, load_credential

    if settings.c2pa_cert or settings.c2pa_key:
        if not (settings.c2pa_cert and settings.c2pa_key):
            raise StoryEngineError("set both c2pa_cert and c2pa_key (STORYENGINE_C2PA_CERT / STORYENGINE_C2PA_KEY), or neither")
        return load_credential(settings.c2pa_cert, settings.c2pa_key, settings.c2pa_alg, settings.c2pa_tsa_url or None)
    base = Path(settings.c2pa_dir).expanduser() if settings.c2pa_dir else \
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "storyengine" / "c2pa"
    return ensure_dev_credential(base)


def sign_take(path: Path, plan, backend, credential, mood: str = "") -> None:
    """Sign a final take file: c2pa.created with the back-end's digital source type, model, seed, still."""
    from .provenance import sign_clip

    model = getattr(getattr(backend, "options", None), "model", None)
    sign_clip(path, credential=credential, backend_id=plan.backend,
              model=str(model) if model else f"{backend.backend_id} {getattr(backend, 'version', '')}".strip(),
              seed=plan.seed, source_still=Path(plan.still),
              digital_source_type=getattr(backend, "digital_source_type", None) or
              "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
              title=f"{plan.shot_id} take {plan.take + 1}",
              extra={"series": plan.series, "episode": plan.episode_id, "shot": plan.shot_id, "take": plan.take + 1,
                     "characters": [c.handle for c in plan.characters], **({"mood": mood} if mood else {})})


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


@dataclass
class ShotForEpisode:
    """What the renderer knows of one shot when the episode is stitched."""

    shot_id: str
    path: Path | None  # the take used (None when every take was rejected)
    keep_start: int
    keep_end: int
    verdict: str
    reason: str = ""
    mood: str = ""
    last_path: Path | None = None


def assemble(spec: SeriesSpec, ep: EpisodeSpec, spec_path: Path, ws: Workspace, shots: list[ShotForEpisode],
             out_path: Path, sheet: Path, settings: Settings, credential=None,
             progress: Callable[[int, int], None] | None = None) -> EpisodeInfo:
    """Stitch, finish and (with a credential) sign one episode from its rendered shots.

    The episode manifest lists the takes it uses as ingredients (titled ``<shot_id> take K``), the
    shots left out, and the disclosure setting. An episode whose every shot was left out (the title
    card alone) is signed too, with no ingredients.
    """
    finisher, (w, h) = finisher_for(spec, ep, spec_path, ws)
    by_id = {s.id: (i, s) for i, s in enumerate(ep.shots)}
    e = spec.episodes.index(ep)
    segments = []
    for r in shots:
        if r.path is None:
            continue
        i, sh = by_id[r.shot_id]
        segments.append(Segment(
            path=r.path, start=r.keep_start, end=r.keep_end, label=r.shot_id, verdict=r.verdict,
            ambience=sh.ambience, transition=sh.transition, captions=list(sh.captions),
            audio=spec_file(spec_path, ws, sh.audio, ("episodes", e, "shots", i, "audio")) if sh.audio else None,
            # a back-end that baked the mood's grade into the take (finishing.BAKES_MOOD) is not graded twice
            grade=MOODS[r.mood].grade if r.mood and not mood_baked(spec.backend) else None, mood=r.mood))
    left_out = [Segment(path=r.last_path, label=r.shot_id, verdict="reject", reason=r.reason)
                for r in shots if r.path is None and r.last_path is not None]
    disclosure = (settings.disclosure_text or None) if settings.disclosure else None
    info = stitch_episode(segments, out_path, fps=spec.fps, width=w, height=h, title=ep.title or ep.id,
                          title_duration=ep.title_duration, transition=ep.transition, ambience=ep.ambience,
                          seed=spec.seed, crf=settings.crf, preset=settings.preset, contact_sheet=sheet,
                          left_out=left_out, progress=progress, end_card=ep.end_card, beats=ep.beats,
                          disclosure=disclosure, finisher=finisher,
                          copy_when_possible=settings.copy_when_possible)
    if credential is not None and (segments or shots):
        from .provenance import sign_episode

        used = [r for r in shots if r.path is not None]
        sign_episode(out_path, credential=credential, clips=[s.path for s in segments], disclosure=disclosure,
                     title=ep.title or ep.id, clip_titles=[take_title(r.shot_id, r.path) for r in used],
                     left_out=[r.shot_id for r in shots if r.path is None])
    return info


_TAKE_FILE = re.compile(r"^take-(\d+)-seed")


def take_title(shot_id: str, path: Path) -> str:
    """An episode ingredient's title: ``<shot_id> take K``, K from the take's file name
    (``take-K-seedS[-mood].mp4``) or else from the take's own manifest; ``<shot_id>`` if neither says."""
    m = _TAKE_FILE.match(Path(path).name)
    if m:
        return f"{shot_id} take {int(m.group(1))}"
    try:
        from .provenance import verify

        take = (verify(Path(path)).render or {}).get("take")
    except Exception:
        take = None
    return f"{shot_id} take {int(take)}" if isinstance(take, int) else shot_id
