"""Shared plumbing for the diffusers back-ends (``wan``, ``wan-vace``, ``ltx``, ``cogvideox``, ``svd``, ``consisid``).

Each back-end file reads top to bottom like a diffusers pipeline file and calls into here for
what would otherwise be six copies: loading a pipeline (offline-aware, with a one-line hint),
placing it (dtype, device, offload, VAE tiling/slicing), a seeded generator, the family's
frame/size rules, turning pipeline output into a lazy stream of uint8 RGB frames, and
character LoRA adapters (safetensors only, verified after loading).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field

from ..errors import BackendError
from ..specs import CharacterRef, ShotPlan
from .base import Clip, Progress, VideoBackend
from .base import prompt_with_triggers as _prompt_with_triggers

FAMILIES = ("wan", "wan-vace", "ltx", "cogvideox", "svd", "consisid")
# Adapters trained on one family's transformer load into these back-ends.
LORA_COMPATIBLE = {
    "wan": {"wan", "wan-vace"},
    "wan-vace": {"wan", "wan-vace"},
    "ltx": {"ltx"},
    "cogvideox": {"cogvideox", "consisid"},
    "consisid": {"cogvideox", "consisid"},
}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
LOAD_TIME_OPTIONS = ("model", "dtype", "device", "offload")


class DiffusersOptions(VideoBackend.Options):
    """Settings every diffusers back-end understands; each back-end subclasses with its own defaults."""

    model: str = Field(description="Hub model id or local folder saved with `save_pretrained`.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on CPU."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps …")
    offload: Literal["none", "model", "sequential"] = Field(
        "none", description="model: whole models move to the GPU in turn; sequential: layer by layer (slowest, least VRAM)."
    )
    vae_tiling: bool = Field(False, description="Decode in tiles (less VRAM at high resolution).")
    vae_slicing: bool = Field(False, description="Decode batch items one at a time.")
    steps: int = Field(30, ge=1, le=500)
    guidance: float = Field(5.0, ge=0.0, le=30.0)
    width: int | None = Field(None, ge=16, description="Generation width; default: the plan's, rounded to the family's multiple.")
    height: int | None = Field(None, ge=16, description="Generation height; default: the plan's, rounded to the family's multiple.")
    num_frames: int | None = Field(
        None, ge=1, description="Frames to generate; default: the plan's. Other counts are retimed to the plan's."
    )
    negative_prompt: str = ""
    max_sequence_length: int | None = Field(None, ge=1, description="Text tokens; default: the pipeline's.")


# ---------------------------------------------------------------------------------------------
# Loading and placing a pipeline
# ---------------------------------------------------------------------------------------------


def offline() -> bool:
    """True when HF_HUB_OFFLINE asks for cached/local files only (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def looks_like_path(model: str) -> bool:
    """A folder rather than a hub id (``org/name``)."""
    return model.startswith(("/", "./", "../", "~", ".")) or model.count("/") > 1 or Path(model).exists()


def missing_model_hint(backend_id: str, model: str) -> str:
    if looks_like_path(model):
        return f"{backend_id}: model folder {model!r} does not exist or is not a diffusers pipeline (no model_index.json); save one with `pipeline.save_pretrained(folder)`"
    return (
        f"{backend_id}: weights for {model!r} are not available locally"
        f"{' (HF_HUB_OFFLINE=1)' if offline() else ''}; fetch them with `huggingface-cli download {model}` "
        f"or set the back-end option model to a local folder"
    )


def torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def resolve_device(name: str) -> str:
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_pipeline(pipeline_cls: type, opts: DiffusersOptions, backend_id: str, **kwargs: Any):
    """``pipeline_cls.from_pretrained(opts.model)``, local files only when offline or given a folder.

    Raises:
        BackendError: with a one-line hint when the weights are not present locally.
    """
    model = os.path.expanduser(opts.model)
    local = Path(model).is_dir()
    if looks_like_path(opts.model) and not (local and (Path(model) / "model_index.json").is_file()):
        raise BackendError(missing_model_hint(backend_id, opts.model))
    device = resolve_device(opts.device)
    try:
        pipe = pipeline_cls.from_pretrained(
            model, torch_dtype=torch_dtype(opts.dtype, device), local_files_only=local or offline(), **kwargs
        )
    except (OSError, ValueError) as e:  # huggingface_hub's not-found errors are OSErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if local or offline() or "not found" in first.lower() or "connect" in first.lower() or "offline" in first.lower():
            raise BackendError(missing_model_hint(backend_id, opts.model)) from e
        raise BackendError(f"{backend_id}: could not load {opts.model!r}: {first}") from e
    return place_pipeline(pipe, opts)


def place_pipeline(pipe, opts: DiffusersOptions):
    """Apply device, dtype (only when asked), CPU offload and VAE tiling/slicing."""
    device = resolve_device(opts.device)
    if opts.dtype != "auto":
        pipe.to(dtype=torch_dtype(opts.dtype, device))
    if opts.offload != "none" and device != "cpu":
        gpu = device if ":" in device else None
        if opts.offload == "model":
            pipe.enable_model_cpu_offload(device=gpu) if gpu else pipe.enable_model_cpu_offload()
        else:
            pipe.enable_sequential_cpu_offload(device=gpu) if gpu else pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if opts.vae_tiling and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        if opts.vae_slicing and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe


def check_load_time_options(backend_id: str, loaded: DiffusersOptions, shot: DiffusersOptions) -> None:
    """A shot may not change what was fixed when the pipeline loaded."""
    for name in LOAD_TIME_OPTIONS:
        if getattr(loaded, name) != getattr(shot, name):
            raise BackendError(
                f"{backend_id}: option {name!r} is fixed once the pipeline is loaded "
                f"({getattr(loaded, name)!r}); a shot asked for {getattr(shot, name)!r}"
            )


def generator(seed: int):
    """A CPU ``torch.Generator`` seeded from the plan: same seed, same noise on any device."""
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))


# ---------------------------------------------------------------------------------------------
# Frame-count and size rules
# ---------------------------------------------------------------------------------------------


def nearest_valid_frames(n: int, step: int) -> tuple[int, int]:
    """The valid counts (step·k+1) just below and above ``n``."""
    below = max(1, ((n - 1) // step) * step + 1)
    return below, below + step


def check_frames(backend_id: str, n: int, step: int, where: str = "num_frames") -> None:
    if step > 1 and (n < 1 or (n - 1) % step):
        lo, hi = nearest_valid_frames(n, step)
        raise BackendError(
            f"{backend_id}: {where} must be {step}k+1 (…, {lo}, {hi}, …) but is {n}"
        )


def check_size(backend_id: str, width: int, height: int, multiple: int) -> None:
    if width % multiple or height % multiple:
        raise BackendError(
            f"{backend_id}: width and height must be divisible by {multiple} but are {width} and {height}"
        )


def round_to(value: int, multiple: int) -> int:
    return max(multiple, int(value / multiple + 0.5) * multiple)  # half rounds up, not to even


def generation_size(backend_id: str, plan: ShotPlan, opts: DiffusersOptions, multiple: int) -> tuple[int, int]:
    """(width, height) to generate at: explicit options are validated, the plan's size is rounded."""
    width = opts.width if opts.width is not None else round_to(plan.width, multiple)
    height = opts.height if opts.height is not None else round_to(plan.height, multiple)
    check_size(backend_id, width, height, multiple)
    return width, height


def generation_frames(backend_id: str, plan: ShotPlan, opts: DiffusersOptions, step: int) -> int:
    n = opts.num_frames if opts.num_frames is not None else plan.num_frames
    check_frames(backend_id, n, step, "num_frames option" if opts.num_frames is not None else "the plan's num_frames")
    return n


# ---------------------------------------------------------------------------------------------
# Output frames
# ---------------------------------------------------------------------------------------------


def _to_uint8(frame: Any) -> np.ndarray:
    """One frame from np (HWC float 0..1 or uint8), PIL, or torch (CHW float 0..1) to HxWx3 uint8."""
    if hasattr(frame, "convert"):  # PIL
        return np.asarray(frame.convert("RGB"), dtype=np.uint8)
    if hasattr(frame, "detach"):  # torch, channels first
        frame = frame.detach().float().cpu().numpy()
        if frame.ndim == 3 and frame.shape[0] in (1, 3) and frame.shape[-1] not in (1, 3):
            frame = frame.transpose(1, 2, 0)
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def first_video(frames: Any) -> Any:
    """``output.frames`` holds a batch; return the first video's frame sequence."""
    if isinstance(frames, np.ndarray) and frames.ndim == 5:
        return frames[0]
    if hasattr(frames, "detach") and frames.ndim == 5:
        return frames[0]
    if isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], (list, tuple, np.ndarray)):
        return frames[0]
    return frames


def retime_indices(n_src: int, n_dst: int) -> list[int]:
    """Nearest source frame for each output frame (same count: identity)."""
    if n_src == n_dst:
        return list(range(n_src))
    if n_dst == 1:
        return [0]
    return [min(n_src - 1, int(round(i * (n_src - 1) / (n_dst - 1)))) for i in range(n_dst)]


def stream_frames(
    frames: Any, width: int, height: int, num_frames: int, progress: Progress | None = None
) -> Iterator[np.ndarray]:
    """Lazily yield ``num_frames`` uint8 RGB frames at width×height from a pipeline's output frames."""
    import cv2

    video = first_video(frames)
    indices = retime_indices(len(video), num_frames)

    def gen() -> Iterator[np.ndarray]:
        for done, i in enumerate(indices, start=1):
            arr = _to_uint8(video[i])
            if arr.shape[1] != width or arr.shape[0] != height:
                shrink = arr.shape[1] > width and arr.shape[0] > height
                arr = cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            if progress is not None:
                progress(done, num_frames)
            yield arr

    return gen()


def load_still(plan: ShotPlan, width: int, height: int):
    """The plan's still as RGB PIL, cover-cropped to the generation aspect and resized."""
    from PIL import Image, ImageOps

    path = plan.still_path
    if not path.is_file():
        raise BackendError(f"{plan.backend}: still {str(path)!r} does not exist")
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return ImageOps.fit(im, (width, height), method=Image.Resampling.LANCZOS)


# ---------------------------------------------------------------------------------------------
# Prompts and character adapters (LoRA)
# ---------------------------------------------------------------------------------------------


def prompt_with_triggers(plan: ShotPlan) -> str:
    """The plan's prompt with any missing adapter trigger words put in front (order of characters).

    The planner already did this; doing it again is a no-op, and covers plans built by hand.
    """
    return _prompt_with_triggers(plan.prompt, plan.characters)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_adapter_file(path: str | Path, sha256: str | None = None) -> Path:
    """Refuse anything that is not a readable safetensors file (pickles can run code when loaded).

    Raises:
        BackendError: naming the file and the reason.
    """
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise BackendError(
            f"adapter {str(p)!r} is a {p.suffix} file (pickle, can execute code when loaded); "
            f"only .safetensors adapters are accepted — convert it with safetensors.torch.save_file"
        )
    if p.suffix.lower() != ".safetensors":
        raise BackendError(f"adapter {str(p)!r} is not a .safetensors file (suffix {p.suffix or 'none'!r})")
    if not p.is_file():
        raise BackendError(f"adapter {str(p)!r} does not exist")
    with open(p, "rb") as f:
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        ok = 2 <= size <= 100_000_000 and size + 8 <= p.stat().st_size
        try:
            header = json.loads(f.read(size)) if ok else None
        except (ValueError, UnicodeDecodeError):
            header = None
    if not isinstance(header, dict):
        raise BackendError(f"adapter {str(p)!r} has a .safetensors name but is not a safetensors file (bad header)")
    if sha256 and sha256_file(p) != sha256:
        raise BackendError(f"adapter {str(p)!r} does not match its registered sha256 {sha256[:12]}… (file changed?)")
    return p


def injected_layers(model, adapter_name: str) -> int:
    """How many peft tuner layers in ``model`` carry ``adapter_name``."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a dependency of LoRA loading itself
        raise BackendError("LoRA adapters need the `peft` package: pip install peft") from None
    count = 0
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            if adapter_name in getattr(module, "lora_A", {}) or adapter_name in getattr(module, "lora_embedding_A", {}):
                count += 1
    return count


def adapter_name(char: CharacterRef, index: int) -> str:
    """Adapter handle: the character's handle, suffixed when a character has several adapters."""
    return char.handle if index == 0 else f"{char.handle}-{index}"


# Pipeline class name prefixes (model_index.json ``_class_name``) and hub-id words → family.
_CLASS_FAMILY = (("WanVACE", "wan-vace"), ("Wan", "wan"), ("LTX", "ltx"), ("CogVideoX", "cogvideox"),
                 ("ConsisID", "consisid"), ("StableVideoDiffusion", "svd"))
_WORD_FAMILY = ((r"consisid", "consisid"), (r"cogvideox", "cogvideox"), (r"ltx", "ltx"), (r"vace", "wan-vace"),
                (r"(?<![a-z])wan", "wan"), (r"stable-video-diffusion|(?<![a-z])svd", "svd"))


def adapter_family(base: str) -> str | None:
    """The model family an adapter's ``base`` names: a back-end id (``wan``), a local pipeline folder
    (its ``model_index.json`` class), or a hub id (``Wan-AI/Wan2.1-I2V-14B-480P-Diffusers``); None if unknown."""
    import re

    base = (base or "").strip()
    if base in FAMILIES:
        return base
    index = Path(os.path.expanduser(base)) / "model_index.json"
    if base and index.is_file():
        try:
            cls = str(json.loads(index.read_text()).get("_class_name", ""))
        except (OSError, ValueError):
            cls = ""
        return next((fam for prefix, fam in _CLASS_FAMILY if cls.startswith(prefix)), None)
    name = base.lower()
    return next((fam for pattern, fam in _WORD_FAMILY if re.search(pattern, name)), None)


def check_adapter_base(backend_id: str, adapter: dict[str, Any]) -> None:
    """Refuse an adapter trained for another model family (its layers would not fit, or fit wrongly).

    Adapters whose base names no known family pass here; the injection check after loading
    still refuses one that fits nothing.

    Raises:
        BackendError: naming the adapter file, its base and the back-ends it loads into.
    """
    base = str(adapter.get("base") or "")
    family = adapter_family(base)
    compatible = LORA_COMPATIBLE.get(backend_id, {backend_id})
    if family is not None and family not in compatible:
        shown = repr(base) if base == family else f"{base!r} ({family})"
        raise BackendError(
            f"{backend_id}: adapter {str(adapter.get('path'))!r} was trained for {shown}; "
            f"it loads into {', '.join(sorted(LORA_COMPATIBLE.get(family, {family})))} only"
        )


def lora_labels(characters: list[CharacterRef]) -> list[tuple[str, float, dict[str, Any]]]:
    """(adapter name, weight, adapter) for every adapter of the shot's characters, in order."""
    return [
        (adapter_name(char, i), float(adapter.get("weight", 1.0)), adapter)
        for char in characters
        for i, adapter in enumerate(char.adapters)
    ]


class AdapterSet:
    """Character LoRA adapters loaded into one pipeline; loads each file once, switches per shot."""

    def __init__(self, backend_id: str, denoiser_attr: str = "transformer") -> None:
        self.backend_id = backend_id
        self.denoiser_attr = denoiser_attr
        self.loaded: dict[str, str] = {}  # adapter name -> sha256 of the file loaded under that name

    def apply(self, pipe, characters: list[CharacterRef]) -> list[str]:
        """Load and activate the characters' adapters; returns conditioning labels (``lora:mara@0.8``)."""
        wanted = lora_labels(characters)
        if not wanted:
            if self.loaded:
                pipe.disable_lora()
            return []
        if not hasattr(pipe, "load_lora_weights"):
            raise BackendError(f"{self.backend_id}: this pipeline cannot load LoRA adapters")
        for name, _, adapter in wanted:
            self._load(pipe, name, adapter)
        pipe.enable_lora()
        pipe.set_adapters([n for n, _, _ in wanted], adapter_weights=[w for _, w, _ in wanted])
        return [f"lora:{n}@{w:g}" for n, w, _ in wanted]

    def _load(self, pipe, name: str, adapter: dict[str, Any]) -> None:
        path = adapter.get("path")
        if not path:
            raise BackendError(f"{self.backend_id}: adapter {name!r} has no path")
        check_adapter_base(self.backend_id, adapter)
        p = check_adapter_file(path, adapter.get("sha256") or None)
        digest = adapter.get("sha256") or sha256_file(p)
        if self.loaded.get(name) == digest:
            return
        if name in self.loaded:  # same handle, new file: replace
            pipe.delete_adapters(name)
            del self.loaded[name]
        denoiser = getattr(pipe, self.denoiser_attr)
        try:
            pipe.load_lora_weights(str(p), adapter_name=name)
        except (ValueError, KeyError, RuntimeError) as e:
            self._forget(pipe, name)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            first = first if len(first) <= 160 else first[:157] + "…"
            raise BackendError(f"{self.backend_id}: adapter {str(p)!r} does not fit this model: {first}") from e
        n = injected_layers(denoiser, name)
        if n == 0:
            self._forget(pipe, name)
            raise BackendError(
                f"{self.backend_id}: adapter {str(p)!r} injected 0 layers into the {self.denoiser_attr} "
                f"(its keys match none of this model's modules; trained for another model?)"
            )
        self.loaded[name] = digest

    def _forget(self, pipe, name: str) -> None:
        try:
            pipe.delete_adapters(name)
        except Exception:  # nothing was registered under that name
            pass
        self.loaded.pop(name, None)


# ---------------------------------------------------------------------------------------------
# The shared back-end skeleton
# ---------------------------------------------------------------------------------------------


class DiffusersBackend(VideoBackend):
    """A back-end around one diffusers pipeline.

    Subclasses set ``pipeline_class`` (a callable returning the class, so importing a back-end
    stays cheap), ``size_multiple`` and ``default_frame_step``, and implement
    :meth:`prepare_inputs`, which returns the exact keyword arguments for the pipeline call
    plus the conditioning labels. ``pipeline=`` hands in an already-built pipeline (tests pass
    tiny random ones); otherwise it is loaded from ``options.model`` on first use.
    """

    version = "1"
    size_multiple: int = 8
    default_frame_step: int = 4
    denoiser_attr: str = "transformer"
    Options = DiffusersOptions

    def __init__(self, options: Any = None, *, pipeline: Any = None) -> None:
        super().__init__(options)
        self._pipeline = pipeline
        self._loaded_with: DiffusersOptions | None = None
        self._adapters = AdapterSet(self.backend_id, self.denoiser_attr)

    @classmethod
    def pipeline_class(cls, opts: DiffusersOptions) -> type:
        raise NotImplementedError

    @property
    def pipeline(self):
        """The diffusers pipeline, loaded from ``options.model`` the first time it is needed."""
        if self._pipeline is None:
            self._pipeline = load_pipeline(self.pipeline_class(self.options), self.options, self.backend_id)
            self._loaded_with = self.options
        return self._pipeline

    @classmethod
    def frame_step_for(cls, options: Any) -> int:
        return cls.default_frame_step

    @classmethod
    def planned_num_frames(cls, n: int, options: Any) -> int:
        """With the ``num_frames`` option the generated count is retimed to any plan count; else snap."""
        if getattr(options, "num_frames", None) is not None:
            return n
        return super().planned_num_frames(n, options)

    @classmethod
    def planned_conditioning(cls, characters: list[CharacterRef], options: Any) -> list[str]:
        """``still`` then ``lora:<name>@<weight>`` per adapter (when the family takes LoRA).

        Raises:
            BackendError: an adapter was trained for another family.
        """
        labels = ["still"]
        if cls.supports_lora:
            for name, weight, adapter in lora_labels(characters):
                check_adapter_base(cls.backend_id, adapter)
                labels.append(f"lora:{name}@{weight:g}")
        return labels

    def frame_step(self) -> int:
        """Valid frame counts are ``step·k + 1`` (the VAE's temporal compression)."""
        pipe = self._pipeline
        for attr in ("vae_scale_factor_temporal", "vae_temporal_compression_ratio"):
            if pipe is not None and isinstance(getattr(pipe, attr, None), int):
                return getattr(pipe, attr)
        return self.default_frame_step

    def valid_num_frames(self, n: int) -> int:
        """The smallest valid frame count ≥ ``n`` (for planners choosing a duration)."""
        step = self.frame_step()
        return n if (n - 1) % step == 0 else nearest_valid_frames(n, step)[1]

    def check_inputs(self, plan: ShotPlan, opts: DiffusersOptions) -> tuple[int, int, int]:
        """(width, height, num_frames) to generate, validated against the family's rules."""
        if self.max_characters is not None and len(plan.characters) > self.max_characters:
            raise BackendError(
                f"{self.backend_id}: at most {self.max_characters} character(s) per shot, "
                f"got {len(plan.characters)}: {', '.join(c.handle for c in plan.characters)}"
            )
        if self._loaded_with is not None:
            check_load_time_options(self.backend_id, self._loaded_with, opts)
        width, height = generation_size(self.backend_id, plan, opts, self.size_multiple)
        num_frames = generation_frames(self.backend_id, plan, opts, self.frame_step())
        return width, height, num_frames

    def prepare_inputs(self, plan: ShotPlan, opts: DiffusersOptions | None = None) -> tuple[dict[str, Any], list[str]]:
        raise NotImplementedError

    def text_inputs(self, plan: ShotPlan, opts: DiffusersOptions) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"prompt": prompt_with_triggers(plan), "negative_prompt": opts.negative_prompt or None}
        if opts.max_sequence_length is not None:
            kwargs["max_sequence_length"] = opts.max_sequence_length
        return kwargs

    def generate(self, plan: ShotPlan, progress: Progress | None = None) -> Clip:
        # 1. Check inputs, load adapters, build the pipeline call
        opts = self.options_for(plan)
        inputs, conditioning = self.prepare_inputs(plan, opts)
        # 2. Denoise and decode (the whole take at once: video models denoise all frames jointly)
        output = self.pipeline(**inputs)
        # 3. Stream frames at the plan's size and count
        frames = stream_frames(output.frames, plan.width, plan.height, plan.num_frames, progress)
        meta = {
            "backend": self.backend_id,
            "model": opts.model if self._loaded_with is not None else f"<{type(self.pipeline).__name__} passed in>",
            "seed": plan.seed,
            "steps": opts.steps,
            "guidance": opts.guidance,
            "generated_size": [inputs.get("width"), inputs.get("height")],
            "generated_frames": inputs.get("num_frames"),
            "prompt": inputs.get("prompt"),
            "conditioning": conditioning,
        }
        return Clip(fps=plan.fps, width=plan.width, height=plan.height, num_frames=plan.num_frames, frames=frames, meta=meta)
