"""The subway-diary demo: two recurring characters from bundled public-domain photos, a week of stills, a spec.

Sources (nothing is committed; see docs/demo.md): the person is scikit-image's NASA portrait of
Eileen Collins, the pet is scikit-image's Chelsea the cat, and the planted impostor (day 2 evening)
is matplotlib's US Navy portrait of Grace Hopper. The checker must reject that shot.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .. import media
from ..register import register_character
from ..registry import Registry
from ..settings import Settings
from ..workspace import Workspace, atomic_path

SERIES = "subway-diary"
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FRAMINGS = ["medium", "close", "wide", "close", "medium", "wide", "close"]
IMPOSTOR_SHOT = "day-2-evening"
# Read by the motion back-end (docs/motion.md): every word here is in its vocabulary, so `plan` ignores none.
PROMPTS = {
    "morning": "slow push in. she blinks twice and glances left, then slowly turns her head to the right; a breath, "
               "she shifts her weight",
    "evening": "handheld. she blinks, looks down, then a deep breath, a small smile; the light passes",
}


def _save_png(path: Path, rgb: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path


def register_demo_characters(ws: Workspace, reg: Registry, settings: Settings) -> None:
    """Register ``mara`` (person) and ``chelsea`` (pet) unless they are registered already."""
    from .stills import demo_sources

    src = demo_sources()
    photo_dir = ws.root / "episodes" / "sources"
    if not reg.has_character("mara"):
        a = src["person"].image
        portrait = a[:300, 40:440]  # above the suit patch (dlib sees a second "face" in it)
        relit = np.clip(a[10:290, 70:410].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
        photos = [
            _save_png(photo_dir / "mara-1.png", np.ascontiguousarray(portrait)),
            _save_png(photo_dir / "mara-2.png", np.ascontiguousarray(portrait[:, ::-1])),
            _save_png(photo_dir / "mara-3.png", relit),
        ]
        register_character(reg, ws, "mara", photos, kind="person", name="Mara",
                           description="A commuter on the morning line; played by the NASA portrait of Eileen Collins.",
                           consent="public-domain portrait (NASA); demo use only", licence="public domain",
                           settings=settings)
    if not reg.has_character("chelsea"):
        c = src["pet"].image
        # the appearance fallback is colour-sensitive: register her under lamp light too, as a creator
        # would photograph a pet in both the rooms it appears in
        lamp = np.clip(c[20:290, 25:425].astype(np.float32) * np.array([1.07, 1.0, 0.84]) * 0.9, 0, 255).astype(np.uint8)
        photos = [_save_png(photo_dir / "chelsea-1.png", np.ascontiguousarray(c)),
                  _save_png(photo_dir / "chelsea-2.png", np.ascontiguousarray(c[:, ::-1])),
                  _save_png(photo_dir / "chelsea-3.png", np.ascontiguousarray(lamp))]
        register_character(reg, ws, "chelsea", photos, kind="pet", name="Chelsea",
                           description="Mara's cat, who rides along in a carrier on some days.",
                           consent="public-domain photo (scikit-image); demo use only", licence="public domain",
                           settings=settings)


@lru_cache(maxsize=1)
def _sources() -> tuple[dict, list]:
    from .stills import bystander_sources, demo_sources

    return demo_sources(), bystander_sources()


def _compose_job(job: dict) -> None:
    """Compose one still and its matte (in a worker process, or here): ``job`` names its sources, so it pickles small."""
    from .stills import compose_still

    src, strangers = _sources()
    out = Path(job["out"])
    with atomic_path(out) as tmp:
        made = compose_still(tmp, people=[src[p] for p in job["people"]], pet=src["pet"] if job["pet"] else None,
                             time_of_day=job["tod"], framing=job["framing"], seed=job["seed"], size=tuple(job["size"]),
                             bystanders=[strangers[i] for i in job["bystanders"]], return_matte=True)
    # the still's subject layer, used as given by the motion back-end for parallax (docs/motion.md)
    _save_png(out.with_suffix(".matte.png"), made["matte"])


def write_stills_and_spec(ws: Workspace, *, days: int, width: int, height: int, seconds: float, workers: int = 0) -> Path:
    """Compose two stills a day (side by side in ``workers`` processes; 0: one per CPU) and write
    ``episodes/subway-diary.yaml``; returns the spec path."""
    from ..executors import map_in_processes

    n_strangers = len(_sources()[1])
    n_by = 0
    stills = ws.episodes / "stills"
    episodes = []
    jobs = []
    for d in range(1, days + 1):
        shots = []
        for tod in ("morning", "evening"):
            shot_id = f"day-{d}-{tod}"
            impostor = shot_id == IMPOSTOR_SHOT
            with_cat = (d + (tod == "evening")) % 2 == 0 and not impostor  # day 1 evening, day 2 morning, …
            framing = FRAMINGS[(d - 1 + (tod == "evening") * 3) % len(FRAMINGS)]
            # a stranger further down the carriage wherever the cat does not fill the far side (not in the planted shot)
            bystanders = [] if with_cat or impostor else [n_by % n_strangers]
            n_by += len(bystanders)
            jobs.append({"out": str(stills / f"{shot_id}.png"), "people": ["impostor" if impostor else "person"],
                         "pet": with_cat, "tod": tod, "framing": framing, "seed": 100 * d + (tod == "evening"),
                         "size": (width, height), "bystanders": bystanders})
            shot = {"id": shot_id, "still": f"stills/{shot_id}.png",
                    # the planted shot is *planned* as Mara but shows someone else: the checker must catch it
                    "characters": ["mara", "chelsea"] if with_cat else ["mara"],
                    "duration": seconds, "prompt": PROMPTS[tod]}
            shots.append(shot)
        episodes.append({"id": f"day-{d}", "title": f"Day {d} — {WEEKDAYS[d - 1]}", "ambience": "carriage",
                         "transition": {"type": "crossfade", "duration": 0.75}, "shots": shots})
    map_in_processes(_compose_job, jobs, workers)
    spec = {"series": SERIES, "title": "Subway Diary", "backend": "motion", "fps": 24, "width": width,
            "height": height, "seed": 7, "anonymize": "bystanders", "episodes": episodes}
    path = ws.episodes / f"{SERIES}.yaml"
    header = ("# The subway diary: one episode a day, a morning and an evening shot each.\n"
              f"# Written by `storyengine demo`. The shot {IMPOSTOR_SHOT} is planted: its still shows a\n"
              "# different person in Mara's place, and the drift checker must leave it out. Strangers in the\n"
              "# carriage were not cast: `anonymize: bystanders` makes their faces unrecognisable in every frame.\n")
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")
    return path


def write_motion_strips(series_dir: Path, frames: int = 6, height: int = 120) -> list[Path]:
    """One PNG strip per shot (``strips/<shot>.png``): ``frames`` evenly spaced frames of its first take, so a
    person can see the motion without playing the video."""
    from concurrent.futures import ThreadPoolExecutor

    dirs = sorted(p for p in (Path(series_dir) / "takes").glob("*") if p.is_dir())
    # one shot per thread: decoding (PyAV) and resizing (Pillow) release the GIL, so both cores work
    with ThreadPoolExecutor(max_workers=max(1, min(len(dirs), os.cpu_count() or 1))) as pool:
        return [p for p in pool.map(lambda d: _motion_strip(d, Path(series_dir), frames, height), dirs) if p is not None]


def _motion_strip(shot_dir: Path, series_dir: Path, frames: int, height: int) -> Path | None:
    takes = sorted(shot_dir.glob("take-1-*.mp4"))
    if not takes:
        return None
    n = int(media.video_stream(media.probe(takes[0]), takes[0]).get("nb_frames") or 0) or media.count_frames(takes[0])
    want = {round(i * (n - 1) / max(1, frames - 1)) for i in range(frames)}
    picked = [f for i, f in enumerate(media.iter_frames(takes[0], max_frames=max(want) + 1)) if i in want]
    if not picked:
        return None
    w = round(picked[0].shape[1] * height / picked[0].shape[0])
    strip = np.concatenate([np.asarray(Image.fromarray(f).resize((w, height), Image.LANCZOS)) for f in picked], axis=1)
    return _save_png(series_dir / "strips" / f"{shot_dir.name}.png", strip)


def build_demo(ws: Workspace, *, days: int = 7, width: int = 640, height: int = 360, seconds: float = 4.0,
               workers: int = 0) -> Path:
    """Prepare the demo workspace (characters, stills composed in ``workers`` processes; 0: one per CPU, 1: here,
    and the spec); returns the spec path."""
    if not 1 <= days <= 7:
        raise ValueError(f"`days` must be 1-7, got {days}")
    media.require_tools()  # before any work: the render at the end needs them
    ws.ensure()
    settings = Settings.load(ws.root)
    reg = Registry.open(ws)
    try:
        register_demo_characters(ws, reg, settings)
    finally:
        reg.close()
    return write_stills_and_spec(ws, days=days, width=width, height=height, seconds=seconds, workers=workers)
