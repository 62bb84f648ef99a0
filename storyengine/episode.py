"""An episode spec + its rendered shots → the stitched, finished and signed episode.

:class:`LoadedSpec` is a series spec together with the file it came from and the workspace it
renders in: it resolves the files the spec names (LUTs, sound files; inside the workspace, errors
pointing at the YAML line) and builds each episode's finisher. The renderer calls
:meth:`LoadedSpec.check_files` before rendering anything, and :func:`assemble` once an episode's
shots are done. Takes are signed as they are made (``provenance.sign_take``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import OutputError, SpecError, StoryEngineError, UnsafePathError
from .finishing import MOODS, Finisher, load_cube, mood_baked
from .hashing import file_sha256
from .planner import load_series
from .provenance import Credential, episode_consent, sign_episode, take_title
from .settings import Settings
from .shots import ShotResult
from .specs import EpisodeSpec, Finish, SeriesSpec
from .stitch import EpisodeInfo, Segment, StitchOptions, stitch_episode
from .workspace import DISK_FULL, Workspace, inside, temp_beside

Loc = tuple[Any, ...]
"""A field path inside the spec, e.g. ``("episodes", 0, "shots", 2, "audio")``."""


@dataclass(frozen=True)
class LoadedSpec:
    """A series spec, the YAML file it was read from, and the workspace it renders in."""

    spec: SeriesSpec
    path: Path
    ws: Workspace

    @classmethod
    def load(cls, path: str | Path, ws: Workspace) -> "LoadedSpec":
        """Read and validate ``path`` (SpecError with file, line and field on bad input)."""
        return cls(load_series(path), Path(path), ws)

    @property
    def dir(self) -> Path:
        return self.path.resolve().parent

    def episodes(self, ids: list[str] | None = None) -> list[EpisodeSpec]:
        """The episodes ``ids`` names (all when None or empty), in spec order."""
        return [e for e in self.spec.episodes if not ids or e.id in ids]

    # ---- where a field is written
    def line(self, loc: Loc) -> str:
        """The YAML line of field ``loc`` (``?`` when the file cannot be read back)."""
        try:
            node = yaml.compose(self.path.read_text(encoding="utf-8"))
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

    def file(self, rel: str, loc: Loc) -> Path:
        """``rel`` resolved against the spec's folder; SpecError (file:line: field path) unless it exists inside the workspace."""
        where = f"{self.path}:{self.line(loc)}: {'.'.join(str(p) for p in loc)}"
        p = self.dir / os.path.expanduser(rel)
        try:
            p = inside(self.ws.root, p)
        except UnsafePathError:
            raise SpecError(f"{where}: {rel!r} is outside the workspace {self.ws.root}") from None
        if not p.is_file():
            raise SpecError(f"{where}: file not found: {p}")
        return p

    # ---- finishing and sound
    def finish_of(self, ep: EpisodeSpec) -> tuple[Finish, Loc]:
        """The episode's finish (its own, else the series'), and where it is written."""
        if ep.finish:
            return ep.finish, ("episodes", self.spec.episodes.index(ep), "finish")
        return self.spec.finish, ("finish",)

    def shot_audio(self, ep: EpisodeSpec, index: int) -> Path | None:
        """The sound file under shot ``index`` of ``ep``, resolved (None when it has none)."""
        rel = ep.shots[index].audio
        return self.file(rel, ("episodes", self.spec.episodes.index(ep), "shots", index, "audio")) if rel else None

    def check_files(self) -> None:
        """Every LUT and sound file the spec names exists inside the workspace (before anything renders)."""
        for ep in self.spec.episodes:
            finish, loc = self.finish_of(ep)
            if finish.lut:
                lut = self.file(finish.lut, loc + ("lut",))  # SpecError with the YAML line when missing or outside
                try:
                    load_cube(lut)
                except StoryEngineError as err:  # a malformed .cube: MediaError names its line
                    raise SpecError(f"{self.path}: {'.'.join(map(str, loc + ('lut',)))}: {err}") from None
            for s in range(len(ep.shots)):
                self.shot_audio(ep, s)

    def finisher_for(self, ep: EpisodeSpec) -> Finisher:
        """Grade, LUT and delivery size of ``ep``."""
        finish, loc = self.finish_of(ep)
        size = (finish.width or self.spec.width, finish.height or self.spec.height)
        lut = self.file(finish.lut, loc + ("lut",)) if finish.lut else None
        return Finisher(finish, size, lut)

    def file_hashes(self, ep: EpisodeSpec) -> dict[str, str | None]:
        """Content hashes of the files ``ep`` uses (LUT, sound files), by the name the spec gives them."""
        finish = ep.finish or self.spec.finish
        files: dict[str, str | None] = {}
        for rel in [finish.lut] + [sh.audio for sh in ep.shots]:
            if rel:
                p = (self.dir / rel).resolve()
                files[rel] = file_sha256(p) if p.is_file() else None
        return files


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


def _segments(loaded: LoadedSpec, ep: EpisodeSpec, results: list[ShotResult]) -> tuple[list[Segment], list[Segment]]:
    """(the takes the episode uses, the shots left out) as stitcher segments, in the episode's order."""
    index = {s.id: i for i, s in enumerate(ep.shots)}
    used, left_out = [], []
    for r in results:
        if r.path is None:
            if r.last_path is not None:
                left_out.append(Segment(path=r.last_path, label=r.plan.shot_id, verdict="reject", reason=r.verdict.reason))
            continue
        i = index[r.plan.shot_id]
        sh, v = ep.shots[i], r.verdict
        used.append(Segment(
            path=r.path, start=v.keep_start, end=v.keep_end, label=r.plan.shot_id, verdict=v.decision,
            ambience=sh.ambience, transition=sh.transition, captions=list(sh.captions), audio=loaded.shot_audio(ep, i),
            # a back-end that baked the mood's grade into the take (finishing.BAKES_MOOD) is not graded twice
            grade=MOODS[r.mood].grade if r.mood and not mood_baked(loaded.spec.backend) else None, mood=r.mood))
    return used, left_out


def _human_decisions(used: list[ShotResult]) -> list[dict]:
    """The creator's decisions on the takes an episode uses (storyengine.decisions), for its manifest."""
    out = []
    for r in used:
        h = r.takes[r.chosen].human
        if h:
            out.append({"shot": r.plan.shot_id, "take": h["take"], "action": h["action"], "reason": h.get("reason") or "",
                        "at": h.get("at"), "source": h.get("source")})
    return out


def assemble(loaded: LoadedSpec, ep: EpisodeSpec, results: list[ShotResult], out_path: Path, sheet: Path,
             settings: Settings, credential: Credential | None = None,
             progress: Callable[[int, int], None] | None = None) -> EpisodeInfo:
    """Stitch, finish and (with a credential) sign one episode from its shots' results.

    The episode manifest lists the takes it uses as ingredients (titled ``<shot_id> take K``), the
    shots left out, and the disclosure setting. An episode whose every shot was left out (the title
    card alone) is signed too, with no ingredients.
    """
    finisher = loaded.finisher_for(ep)
    segments, left_out = _segments(loaded, ep, results)
    disclosure = (settings.disclosure_text or None) if settings.disclosure else None
    spec = loaded.spec
    opts = StitchOptions(fps=spec.fps, width=finisher.size[0], height=finisher.size[1], title=ep.title or ep.id,
                         title_duration=ep.title_duration, transition=ep.transition, ambience=ep.ambience,
                         seed=spec.seed, crf=settings.crf, preset=settings.preset, contact_sheet=sheet,
                         left_out=left_out, progress=progress, end_card=ep.end_card, beats=ep.beats,
                         disclosure=disclosure, finisher=finisher, copy_when_possible=settings.copy_when_possible)
    # Stitch and sign under a temporary name (``.<id>.mp4.<hex>.mp4``, swept at the next start);
    # the episode appears under its name only once signed, and an earlier one stays until then.
    out_path = Path(out_path)
    try:
        staged = temp_beside(out_path, ".mp4")
    except OSError as e:
        raise OutputError(f"cannot write into {out_path.parent}: {e.strerror or e}") from None
    try:
        info = stitch_episode(segments, staged, opts)
        if credential is not None and (segments or results):
            used = [r for r in results if r.chosen is not None]
            sign_episode(staged, credential=credential, clips=[s.path for s in segments], disclosure=disclosure,
                         title=ep.title or ep.id,
                         clip_titles=[take_title(r.plan.shot_id, r.takes[r.chosen].take) for r in used],
                         left_out=[r.plan.shot_id for r in results if r.chosen is None],
                         human_decisions=_human_decisions(used),
                         consent=episode_consent([(r.plan, r.takes[r.chosen].anonymized) for r in used]))
        os.replace(staged, out_path)
    except OSError as e:
        raise OutputError(f"cannot write {out_path}: {e.strerror or e}"
                          + (" (file too large / disk full); nothing was kept" if e.errno in DISK_FULL else "")) from None
    finally:
        staged.unlink(missing_ok=True)
    info.path = out_path
    return info
