"""Settings: defaults in code, then ``storyengine.toml`` in the workspace, then ``STORYENGINE_*`` env vars, then CLI flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import StoryEngineError


@dataclass(frozen=True)
class Settings:
    # checking
    check_mode: str = "full"  # "full": every frame; "sampled": 16 evenly spaced frames
    check_stride: int = 1  # in full mode, score every Nth frame
    detect_stride: int = 8  # in full mode, a full-frame detection every Nth frame; faces are tracked in between
    bound: float | None = None  # global override of the per-character acceptance bound
    max_takes: int = 3  # takes per shot before a shot is rejected
    # where shots run (storyengine.executors): auto | local | process | ray
    executor: str = "auto"  # auto: worker processes for a CPU back-end that allows it (motion), else this process
    workers: int = 0  # worker processes (process) or actors (ray); 0: one per CPU (per GPU on Ray), at most the chains
    unknown_run_limit: float = 1.0  # seconds without the character before that is its own finding
    cohort_background: bool = True  # lookalike cohort: also the package-shipped background faces (storyengine.cohort)
    # encoders per character kind
    person_encoders: tuple[str, ...] = ("dlib-face",)
    other_encoders: tuple[str, ...] = ("appearance",)
    # encoder weights (part of each stored vector's encoder_version)
    clip_model: str = "ViT-B-32"  # open_clip architecture
    clip_pretrained: str = "laion2b_s34b_b79k"  # open_clip tag, or a local .safetensors file
    arcface_pack: str = "buffalo_l"  # insightface pack: buffalo_l | buffalo_s | antelopev2
    arcface_root: str = ""  # insightface root holding models/<pack>/ (default ~/.insightface)
    # encoding
    crf: int = 18
    preset: str = "medium"
    take_crf: int = 12
    copy_when_possible: bool = True  # join untouched takes with -c copy when no effect needs new pictures
    # disclosure and content credentials (docs/provenance.md)
    disclosure: bool = True  # the on-screen label; removable only by setting this to false
    disclosure_text: str = "AI-extended from a still photograph"
    sign: bool = True  # C2PA-sign every take and episode
    c2pa_cert: str = ""  # PEM chain, end-entity first; empty = the local development credential
    c2pa_key: str = ""  # PEM private key (PKCS#8)
    c2pa_alg: str = "es256"  # es256 | ps256
    c2pa_tsa_url: str = ""  # RFC 3161 timestamp authority; empty = none
    c2pa_dir: str = ""  # where the development credential lives (default ~/.config/storyengine/c2pa)
    # consent and bystanders (docs/spec.md "Bystanders", docs/provenance.md)
    require_consent: bool = False  # refuse to render a `person` character whose registry entry has no consent note
    anonymize_stride: int = 6  # anonymisation: a full face detection every Nth frame, faces interpolated between
    anonymize_method: str = "pixelate"  # pixelate (then blur) | blur
    anonymize_small_faces: bool = False  # detect from ~11 % of the frame height instead of ~22 % (about 10x the detection cost)
    # registration
    outlier_force: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, workspace: Path | None = None, **overrides: Any) -> "Settings":
        """Defaults, then ``<workspace>/storyengine.toml`` ([storyengine] table), then env, then ``overrides``."""
        s = cls()
        values: dict[str, Any] = {}
        if workspace is not None:
            toml_path = Path(workspace) / "storyengine.toml"
            if toml_path.is_file():
                try:
                    data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
                except tomllib.TOMLDecodeError as e:
                    raise StoryEngineError(f"{toml_path}: {e}") from None
                except UnicodeDecodeError as e:
                    raise StoryEngineError(f"{toml_path}: not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); "
                                           f"save it as UTF-8") from None
                except OSError as e:
                    raise StoryEngineError(f"{toml_path}: cannot be read: {e.strerror or e}") from None
                table = data.get("storyengine", data)
                if not isinstance(table, dict):
                    raise StoryEngineError(f"{toml_path}: `storyengine` must be a table of settings ([storyengine] "
                                           f"followed by `name = value` lines), got {table!r}")
                values.update(table)
        for f in fields(cls):
            env = os.environ.get(f"STORYENGINE_{f.name.upper()}")
            if env is not None:
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name: f for f in fields(cls)}
        clean: dict[str, Any] = {}
        for k, v in values.items():
            if k not in known:
                raise StoryEngineError(f"unknown setting {k!r}; known settings: {', '.join(sorted(known))}")
            clean[k] = _coerce(k, v, getattr(s, k))
        return replace(s, **clean)


AT_LEAST_1 = ("max_takes", "check_stride", "detect_stride", "anonymize_stride")
CHOICES = {"check_mode": ("full", "sampled"), "executor": ("auto", "local", "process", "ray"), "anonymize_method": ("pixelate", "blur"),
           "preset": ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                      "placebo")}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``, checked against the setting's range (one message per bad value)."""
    def bad(why: str = "") -> StoryEngineError:
        return StoryEngineError(f"setting {name!r} has an invalid value {value!r}" + (f": {why}" if why else ""))

    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise bad("it must be a whole number")
            out = int(value)
            if name in AT_LEAST_1 and out < 1:
                raise bad("it must be at least 1")
            if name == "workers" and out < 0:
                raise bad("it must be 0 (one per CPU) or more")
            if name in ("crf", "take_crf") and not 0 <= out <= 51:
                raise bad("x264 CRF runs from 0 to 51")
            return out
        if isinstance(default, tuple):
            return tuple(value) if isinstance(value, (list, tuple)) else tuple(x.strip() for x in str(value).split(",") if x.strip())
        if name == "bound":
            if value in (None, "", "none"):
                return None
            if isinstance(value, bool):
                raise bad("it must be a cosine similarity between -1 and 1, or none")
            out = float(value)
            if not -1.0 <= out <= 1.0:
                raise bad("it must be a cosine similarity between -1 and 1, or none")
            return out
        if name in CHOICES and value not in CHOICES[name]:
            raise bad(f"it must be one of {', '.join(CHOICES[name])}")
        return value
    except (TypeError, ValueError):
        raise bad() from None
