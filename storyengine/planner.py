"""SeriesSpec + registry → ShotPlan[]: resolved stills, characters, seeds, frame counts, conditioning."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from . import plugins
from .backends.base import prompt_with_triggers
from .errors import BackendError, SpecError
from .registry import Registry
from .specs import CharacterRef, SeriesSpec, ShotPlan
from .workspace import Workspace


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (series seed, shot id, take number)."""
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """Follow a pydantic error location through the composed YAML tree; return the deepest node found."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == key), None)
            if nxt is None:
                return node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def _no_duplicate_keys(node: Any, path: Path) -> None:
    """YAML keeps the last of two equal keys without a word; a spec with one is refused instead."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = getattr(k, "value", None)
            if isinstance(k, yaml.ScalarNode):
                if key in seen:
                    raise SpecError(f"{path}:{k.start_mark.line + 1}: duplicate key {key!r} (first at line {seen[key]}); "
                                    f"YAML would keep only the last one")
                seen[key] = k.start_mark.line + 1
            _no_duplicate_keys(v, path)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _no_duplicate_keys(v, path)


def load_series(path: str | Path) -> SeriesSpec:
    """Parse and validate a series spec; errors name the file, the field path and the line."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"series spec not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise SpecError(f"{path}: not UTF-8 text (line {line}, byte {e.object[e.start:e.start + 1]!r}); "
                        f"save the spec as UTF-8") from None
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
        _no_duplicate_keys(root, path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(f"{path}: YAML syntax error at {where}: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a series spec must be a mapping with `series:` and `episodes:`, got {type(data).__name__}")
    try:
        return SeriesSpec.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            node = _node_at(root, loc)
            line = f"line {node.start_mark.line + 1}" if node is not None else "line ?"
            field = ".".join(str(p) for p in loc) or "(top level)"
            value = err.get("input")
            shown = f" (got {value!r})" if not isinstance(value, (dict, list)) and err["type"] != "missing" else ""
            lines.append(f"{path}:{line[5:]}: {field}: {err['msg']}{shown}")
        raise SpecError("invalid series spec:\n  " + "\n  ".join(lines)) from None


def missing_photos(reg: Registry, ws: Workspace, handle: str) -> list[str]:
    """One line per registered photo of ``handle`` whose file is gone (deleted by hand)."""
    return [f"photo {p['id']} ({p['source']}) of {handle!r} is missing: {ws.root / p['path']}; put it back, or remove "
            f"it with `storyengine character remove {handle} --photo {p['id']} --yes`"
            for p in reg.photos(handle) if not (ws.root / p["path"]).is_file()]


def character_ref(reg: Registry, ws: Workspace, handle: str) -> CharacterRef:
    row = reg.character(handle)
    gone = missing_photos(reg, ws, handle)
    if gone:  # its takes' keys hash the photos: every shot would silently render again
        raise SpecError("; ".join(gone))
    return CharacterRef(
        handle=handle, name=row["name"], kind=row["kind"],
        photos=[str(ws.root / p["path"]) for p in reg.photos(handle)],
        adapters=[{"path": str(ws.root / a["path"]), "weight": a["weight"], "trigger": a["trigger"],
                   "base": a["base"], "sha256": a["sha256"]} for a in reg.adapters(handle)],
        consent=row["consent"] or "", licence=row["licence"] or "",
    )


def plan_series(
    spec: SeriesSpec,
    spec_path: str | Path,
    reg: Registry,
    ws: Workspace,
    *,
    episodes: list[str] | None = None,
) -> list[ShotPlan]:
    """Resolve every shot of ``spec`` (or of the named episodes) into a ShotPlan.

    The back-end class (no weights) decides the frame count (its family's rule: a count it
    cannot generate is snapped up to the next valid one, e.g. 96 → 97 for Wan's 4k+1), the
    conditioning labels (``still``, ``reference_images:N``, ``face_embedding``, ``lora:<handle>@<w>``)
    and whether trigger words go into the prompt. A shot with ``still: previous`` plans the
    previous shot's still as a stand-in and sets ``continues_from``; the renderer swaps in that
    shot's last accepted frame (``storyengine.continuity``).

    Raises SpecError naming the shot when a still is missing, a character is not registered,
    an option is invalid, an adapter was trained for another family, or the back-end cannot
    take the shot.
    """
    spec_dir = Path(spec_path).resolve().parent
    backend_cls = plugins.backend_class(spec.backend)
    known_eps = [e.id for e in spec.episodes]
    for ep_id in episodes or []:
        if ep_id not in known_eps:
            raise SpecError(f"episode {ep_id!r} is not in {spec_path} (episodes: {', '.join(known_eps)})")
    refs: dict[str, CharacterRef] = {}
    plans: list[ShotPlan] = []
    for ei, ep in enumerate(spec.episodes):
        if episodes and ep.id not in episodes:
            continue
        previous: ShotPlan | None = None
        for i, shot in enumerate(ep.shots):
            notes: list[str] = []
            where = f"episode {ep.id!r}, shot {shot.id!r}"
            # 1. The still: a file, or the previous shot's last accepted frame (resolved when rendering)
            if shot.still == "previous":
                if previous is None:  # the spec validator already refuses this; keep the planner safe alone
                    raise SpecError(f"{spec_path}: {where}: `still: previous` needs a shot before it in the episode")
                still, continues_from = Path(previous.still), previous.shot_id
            else:
                still, continues_from = (spec_dir / shot.still).resolve(), None
                if not (still.is_relative_to(ws.root) or still.is_relative_to(spec_dir)):
                    raise SpecError(f"{spec_path}: {where}: still {shot.still!r} is outside the workspace {ws.root} "
                                    f"and the spec's folder")
                if not still.is_file():
                    raise SpecError(f"{spec_path}: {where}: still not found: {still}")
                try:
                    notes.extend(_aspect_note(still, spec.width, spec.height, where))
                except SpecError as e:
                    raise SpecError(f"{spec_path}: {e}") from None
            # 2. Characters
            for h in shot.characters:
                if h not in refs:
                    if not reg.has_character(h):
                        known = ", ".join(c["handle"] for c in reg.characters()) or "none"
                        raise SpecError(f"{spec_path}: {where}: unknown character {h!r} (registered: {known})")
                    try:
                        refs[h] = character_ref(reg, ws, h)
                    except SpecError as e:
                        raise SpecError(f"{spec_path}: {where}: {e}") from None
            max_chars = backend_cls.max_characters
            if max_chars is not None and len(shot.characters) > max_chars:
                raise SpecError(f"{spec_path}: {where}: {len(shot.characters)} characters, but back-end "
                                f"{spec.backend!r} supports at most {max_chars}")
            chars = [refs[h] for h in shot.characters]
            # 3. The back-end's options, frame rule and conditioning, asked before anything loads
            options = {**spec.backend_options, **shot.options}
            opts = _backend_options(backend_cls, options, spec_path, where)
            try:
                conditioning = backend_cls.planned_conditioning(chars, opts)
            except BackendError as e:
                raise SpecError(f"{spec_path}: {where}: {e}") from None
            if continues_from is not None and "still" in conditioning:
                conditioning[conditioning.index("still")] = f"still:previous:{continues_from}"
            prompt = prompt_with_triggers(shot.prompt, chars) if backend_cls.supports_lora else shot.prompt
            num_frames = backend_cls.planned_num_frames(max(1, round(shot.duration * spec.fps)), opts)
            timing = getattr(backend_cls, "planned_timing", None)  # model-native timing (diffusers back-ends)
            gen_frames, gen_fps = timing(num_frames, spec.fps, opts) if timing else (num_frames, spec.fps)
            min_dur = shot.min_duration if shot.min_duration is not None else 0.6 * shot.duration
            anon = _anonymize_plan(spec, (ei, i), still, backend_cls, reg, spec_path, where)
            if shot.keep_faces and anon["anonymize"] == "none":
                notes.append(f"{where}: keep_faces is set but anonymize is none here: no face is anonymised anyway")
            plan = ShotPlan(
                series=spec.series, episode_id=ep.id, shot_id=shot.id, index=i, still=str(still),
                characters=chars, prompt=prompt,
                seed=shot.seed if shot.seed is not None else derive_seed(spec.seed, shot.id),
                fps=spec.fps, width=spec.width, height=spec.height, num_frames=num_frames,
                generation_frames=gen_frames, generation_fps=gen_fps,
                duration=num_frames / spec.fps, min_frames=min(num_frames, max(1, round(min_dur * spec.fps))),
                bound=shot.bound, backend=spec.backend, backend_options=options,
                conditioning=conditioning, continues_from=continues_from, takes=shot.takes, moods=list(shot.moods),
                pinned_take=shot.take,
                notes=notes, **anon,
            )
            plans.append(plan)
            previous = plan
    return plans


def _line(spec_path: str | Path, loc: tuple[Any, ...]) -> str:
    """``path:LINE`` of the YAML node at ``loc`` (the file's own line numbers), or just the path."""
    try:
        node = _node_at(yaml.compose(Path(spec_path).read_text(encoding="utf-8")), loc)
    except (OSError, yaml.YAMLError):
        node = None
    return f"{spec_path}:{node.start_mark.line + 1}" if node is not None else str(spec_path)


def _anonymize_plan(spec: SeriesSpec, at: tuple[int, int], still: Path, backend_cls: type, reg: Registry,
                    spec_path: str | Path, where: str) -> dict[str, Any]:
    """The shot's resolved ``anonymize`` (shot, else episode, else series; default none), its all-but
    handles and its ``keep_faces`` as boxes in the still; SpecError (file:line) on a bad one."""
    ei, si = at
    ep = spec.episodes[ei]
    shot = ep.shots[si]
    levels = [(shot.anonymize, ("episodes", ei, "shots", si, "anonymize")), (ep.anonymize, ("episodes", ei, "anonymize")),
              (spec.anonymize, ("anonymize",))]
    value, loc = next(((v, l) for v, l in levels if v is not None), ("none", ("anonymize",)))
    mode, keep = (value, []) if isinstance(value, str) else ("all-but", list(value["all-but"]))
    if mode != "none" and not getattr(backend_cls, "postprocessable", True):
        raise SpecError(f"{_line(spec_path, loc)}: {where}: anonymize: {mode} needs frames storyengine can edit, but back-end "
                        f"{backend_cls.backend_id!r} delivers frames that cannot be post-processed; use `anonymize: none` "
                        "or another back-end")
    for j, h in enumerate(keep):
        if not reg.has_character(h):
            known = ", ".join(c["handle"] for c in reg.characters()) or "none"
            raise SpecError(f"{_line(spec_path, loc + ('all-but', j))}: {where}: anonymize.all-but: unknown character "
                            f"{h!r} (registered: {known})")
    boxes: list[tuple[int, int, int, int]] = []
    if shot.keep_faces:
        from .anonymize import faces_in_still, match_face

        found = faces_in_still(still)
        for j, f in enumerate(shot.keep_faces):
            box = match_face(found, f)
            if box is None:
                listed = ", ".join(f"{k}: {list(b)}" for k, b in enumerate(found)) or "none"
                raise SpecError(f"{_line(spec_path, ('episodes', ei, 'shots', si, 'keep_faces', j))}: {where}: keep_faces[{j}]: "
                                f"{f!r} names no face in the still {still.name} (faces found, left to right: {listed})")
            boxes.append(box)
    return {"anonymize": mode, "anonymize_keep": keep, "keep_faces": boxes}


def _backend_options(backend_cls: type, options: dict[str, Any], spec_path: str | Path, where: str):
    """The back-end's validated Options for one shot; errors name the shot, the option and the value."""
    try:
        return backend_cls.Options(**options)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(options)"
            value = err.get("input")
            shown = f" (got {value!r})" if not isinstance(value, (dict, list)) and err["type"] != "missing" else ""
            problems.append(f"{field}: {err['msg']}{shown}")
        raise SpecError(f"{spec_path}: {where}: back-end {backend_cls.backend_id!r} options: " + "; ".join(problems)) from None


MIN_STILL_SIDE = 16


def _aspect_note(still: Path, width: int, height: int, where: str) -> list[str]:
    """The resize policy, said out loud when a still's shape differs from the frame's (cover + centre crop)."""
    from PIL import Image

    from .images import MAX_PIXELS

    try:
        with Image.open(still) as im:
            w, h = im.size
            frames = getattr(im, "n_frames", 1)
    except Exception:
        return []  # the back-end's own loader reports unreadable stills
    if min(w, h) < MIN_STILL_SIDE:
        raise SpecError(f"{where}: still {still.name} is too small: {w}x{h} (minimum {MIN_STILL_SIDE} px on the short side)")
    if w * h > MAX_PIXELS:
        raise SpecError(f"{where}: still {still.name} is too large: {w}x{h} = {w * h} pixels (limit {MAX_PIXELS})")
    notes = [f"{where}: still {still.name} is animated ({frames} frames): its first frame is used"] if frames > 1 else []
    if abs((w / h) / (width / height) - 1.0) <= 0.01:
        return notes
    return notes + [f"{where}: still {still.name} is {w}x{h} (aspect {w / h:.2f}), the frame is {width}x{height} "
            f"(aspect {width / height:.2f}): it is scaled to cover the frame and centre-cropped"]


def take_plan(plan: ShotPlan, take: int) -> ShotPlan:
    """The plan for take ``take`` (0 = first): same shot, a derived seed."""
    if take == 0:
        return plan
    return plan.model_copy(update={"take": take, "seed": derive_seed(plan.seed, "take", take)})
