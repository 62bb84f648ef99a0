"""Content-addressed take cache: a take is stored under the hash of everything that determines its frames.

Layout (inside ``renders/<series>/cache/``)::

    takes/<key>.mp4     the take as written (and signed) by the renderer
    takes/<key>.json    what produced it (the key's inputs), its frame count, and the verdicts
                        it received, each under the key of the check that produced it

A take is written with temp file + rename and its ``.json`` only after its ``.mp4``: an entry
whose ``.json`` exists is complete. A ``kill -9`` at any moment therefore leaves either a
complete entry or a stray temp file (removed by :meth:`TakeCache.sweep`), never a partial take.

The frame key covers: the resolved shot plan minus what only the checker or the stitcher reads
(episode, position, minimum length, bound), the content hashes of the still, the character
photos and adapters (not their paths), the back-end id, version, resolved options and model
revision, and the take encoding settings. The check key covers the frame key plus the
character references (vectors' hash), bounds and check settings, so a changed bound re-checks
a cached take without regenerating it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .hashing import file_sha256
from .specs import ShotPlan
from .workspace import atomic_path

CACHE_VERSION = 1
_log = logging.getLogger("storyengine")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(_canonical(obj)).hexdigest()


def backend_identity(backend: Any, plan: ShotPlan) -> dict[str, Any]:
    """What about the back-end determines frames: id, version, resolved options, model revision."""
    ident = getattr(backend, "cache_identity", None)
    if callable(ident):
        return ident(plan)
    try:
        options = backend.options_for(plan).model_dump(mode="json")
    except Exception:  # options are validated at generate time; the key must not fail first
        options = plan.backend_options
    return {"backend": getattr(backend, "backend_id", type(backend).__name__),
            "version": getattr(backend, "version", "0"), "options": options}


def key_parts(plan: ShotPlan, backend: Any, *, take_crf: int, anonymize: dict[str, Any] | None = None) -> dict[str, str]:
    """The frame key's inputs, each hashed on its own (so ``render --dry-run`` can say what changed).

    ``anonymize`` is :func:`storyengine.anonymize.key_inputs` (None when off: the key is then the
    same as before anonymisation existed, so turning it off reuses the untouched takes).
    """
    p = plan.model_dump(mode="json")
    for k in ("episode_id", "index", "min_frames", "bound", "duration", "takes", "moods", "continues_from",
              "still", "characters", "seed", "prompt", "backend", "backend_options", "shot_id", "series", "notes",
              "pinned_take", "take_decisions",  # the creator's decisions choose among takes, never change frames
              "anonymize", "anonymize_keep", "keep_faces"):  # keyed apart, only when anonymisation is on
        p.pop(k, None)
    chars = [
        {"handle": c.handle, "kind": c.kind,
         "photos": sorted(file_sha256(x) for x in c.photos if Path(x).is_file()),
         "adapters": [{"sha256": a.get("sha256"), "weight": a.get("weight"), "trigger": a.get("trigger")} for a in c.adapters]}
        for c in plan.characters
    ]
    return {
        "still": file_sha256(plan.still),
        "seed": digest(plan.seed),
        "prompt": digest(plan.prompt),
        "characters": digest(chars),
        "back-end": digest(backend_identity(backend, plan)),
        "frames and size": digest(p),  # fps, width, height, num_frames, conditioning, take
        "take encoding": digest({"take_crf": take_crf, "cache": CACHE_VERSION}),
        **({"anonymize": digest(anonymize)} if anonymize else {}),
    }


def take_key(plan: ShotPlan, backend: Any, *, take_crf: int, anonymize: dict[str, Any] | None = None) -> str:
    """The frame key of a take: equal keys mean byte-identical frames."""
    return digest(key_parts(plan, backend, take_crf=take_crf, anonymize=anonymize))


def check_key(frame_key: str, refs: Iterable[Any], settings: Any, plan: ShotPlan) -> str:
    """The key of a verdict on a take: the frames plus the references and the check settings."""
    r = [{"handle": x.handle, "encoder": getattr(x.encoder, "name", x.encoder),
          "encoder_version": getattr(x.encoder, "version", ""), "bound": x.bound,
          "vectors": hashlib.sha256(b"".join(v.astype("float32").tobytes() for v in x.vectors)).hexdigest(),
          # the lookalike cohort (issue 15): a changed cohort re-checks, never regenerates
          "cohort": digest([[n, hashlib.sha256(np_bytes(v)).hexdigest()] for n, v in getattr(x, "cohort", ()) or ()])}
         for x in refs]
    s = {k: getattr(settings, k, None) for k in ("check_mode", "check_stride", "detect_stride", "unknown_run_limit", "bound")}
    from . import consistency

    return digest({"frames": frame_key, "refs": r, "settings": s, "min_frames": plan.min_frames, "bound": plan.bound,
                   "checker": getattr(consistency, "CACHE_VERSION", 0)})


def np_bytes(a: Any) -> bytes:
    """The float32 bytes of an array (cohort vectors in check keys)."""
    import numpy as np

    return np.asarray(a, dtype=np.float32).tobytes()


@dataclass
class CachedTake:
    key: str
    path: Path
    meta: dict[str, Any]

    def verdict(self, check: str) -> dict[str, Any] | None:
        """The stored check result (verdict, summaries, frames) for check key ``check``, if any."""
        return self.meta.get("checks", {}).get(check)


class TakeCache:
    """Takes by frame key under ``root`` (``renders/<series>/cache``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.takes = self.root / "takes"

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not (len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
            raise ValueError(f"not a cache key: {key!r}")
        return self.takes / f"{key}.mp4", self.takes / f"{key}.json"

    def get(self, key: str, *, drop: bool = False) -> CachedTake | None:
        """The complete entry for ``key``, or None (a half-written or damaged entry counts as absent).

        Damaged means: metadata that is not JSON or not of the expected shape, a size or (for entries
        that record it) a sha256 that does not match the file. With ``drop`` (the renderer, under the
        workspace lock) a damaged entry is reported on the ``storyengine`` logger and removed, so
        it is generated again; a damaged verdict is forgotten (the take is checked again).
        """
        mp4, meta = self._paths(key)
        if not (mp4.is_file() and meta.is_file()):
            return None
        why = None
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError) as e:
            data, why = None, f"unreadable metadata ({type(e).__name__})"
        if why is None and not (isinstance(data, dict) and isinstance(data.get("size"), int)
                                and isinstance(data.get("frames", 0), int)):
            why = "metadata of the wrong shape"
        elif why is None and data["size"] != mp4.stat().st_size:
            why = f"the file has {mp4.stat().st_size} bytes, its metadata says {data['size']}"
        elif why is None and isinstance(data.get("sha256"), str) and file_sha256(mp4) != data["sha256"]:
            why = "the file's bytes changed since it was made (sha256 differs)"
        if why is not None:
            if drop:
                _log.warning("damaged take in the cache %s: %s; dropped, it is generated again", mp4, why)
                meta.unlink(missing_ok=True)
                mp4.unlink(missing_ok=True)
            return None
        checks = data.get("checks")
        if not isinstance(checks, dict) or not all(isinstance(v, dict) for v in checks.values()):
            data["checks"] = {}
        return CachedTake(key, mp4, data)

    def path_for(self, key: str) -> Path:
        return self._paths(key)[0]

    def put(self, key: str, written: Path, meta: dict[str, Any]) -> CachedTake:
        """Record a take already written (atomically) at ``path_for(key)``; the metadata lands last."""
        mp4, meta_path = self._paths(key)
        if Path(written) != mp4:
            os.replace(written, mp4)
        data = {**meta, "key": key, "size": mp4.stat().st_size, "sha256": file_sha256(mp4),
                "checks": meta.get("checks", {})}
        with atomic_path(meta_path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, default=str))
        return CachedTake(key, mp4, data)

    def add_check(self, entry: CachedTake, check: str, result: dict[str, Any]) -> None:
        """Store a verdict for ``entry`` under check key ``check`` (atomic rewrite of the metadata)."""
        entry.meta.setdefault("checks", {})[check] = result
        _, meta_path = self._paths(entry.key)
        with atomic_path(meta_path) as tmp:
            tmp.write_text(json.dumps(entry.meta, indent=1, default=str))

    def sweep(self) -> int:
        """Remove temp files left by an interrupted write; return how many."""
        n = 0
        if self.takes.is_dir():
            for p in self.takes.iterdir():
                if p.name.startswith("."):
                    p.unlink(missing_ok=True)
                    n += 1
        return n
