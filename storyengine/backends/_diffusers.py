"""Shared plumbing for the diffusers back-ends (``wan``, ``wan-vace``, ``ltx``, ``cogvideox``, ``svd``, ``consisid``).

Each back-end file reads top to bottom like a diffusers pipeline file and calls into here for
what would otherwise be six copies: loading a pipeline (offline-aware, with a one-line hint),
placing it (dtype, device, offload, VAE tiling/slicing), a seeded generator, the family's
frame/size rules, turning pipeline output into a lazy stream of uint8 RGB frames, and
character LoRA adapters (safetensors only, verified after loading).
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field

from ..errors import BackendError
from ..hashing import file_sha256
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
LOAD_TIME_OPTIONS = ("model", "dtype", "device", "offload", "weight_variant")
OFFLOAD_MODES = ("none", "model", "group", "sequential")
"""Lightest first: the order ``offload: auto`` tries them in."""


class DiffusersOptions(VideoBackend.Options):
    """Settings every diffusers back-end understands; each back-end subclasses with its own defaults."""

    model: str = Field(description="Hub model id or local folder saved with `save_pretrained`.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on CPU."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps …")
    weight_variant: str | None = Field(None, description="Weight files variant to load (fp16 …); ignored for folders without it.")
    offload: Literal["auto", "none", "model", "group", "sequential"] = Field(
        "model",
        description="none: all on the GPU; model: whole models move to the GPU in turn; group: blocks of layers "
        "stream in (diffusers group offloading); sequential: layer by layer (slowest, least VRAM); "
        "auto: the lightest mode whose estimate fits the card's free memory.",
    )
    vae_tiling: bool = Field(True, description="Decode in tiles (less VRAM at high resolution); may change per shot.")
    vae_slicing: bool = Field(False, description="Decode batch items one at a time; may change per shot.")
    timing: Literal["native", "plan"] = Field(
        "native",
        description="native: generate at the model's trained frame rate and count (chaining from the last frame for "
        "longer shots) and retime to the series fps with optical flow; plan: generate the plan's frames directly.",
    )
    steps: int = Field(30, ge=1, le=500)
    guidance: float = Field(5.0, ge=0.0, le=30.0)
    width: int | None = Field(None, ge=16, description="Generation width; default: the plan's, rounded to the family's multiple.")
    height: int | None = Field(None, ge=16, description="Generation height; default: the plan's, rounded to the family's multiple.")
    num_frames: int | None = Field(
        None, ge=1, description="Frames to generate (timing: plan); other counts are retimed to the plan's."
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


DOWNLOAD_INCLUDE = ("model_index.json", "*/*")
"""What a diffusers pipeline needs from its repo: the index and the component folders, not the
single-file checkpoints some repos also keep at the top level (LTX-Video's are 10 GB each)."""


def download_command(model: str, include: tuple[str, ...] = DOWNLOAD_INCLUDE) -> str:
    return f"hf download {model} --include " + " ".join(f"'{p}'" for p in include)


def missing_model_hint(backend_id: str, model: str, include: tuple[str, ...] = DOWNLOAD_INCLUDE) -> str:
    if looks_like_path(model):
        return f"{backend_id}: model folder {model!r} does not exist or is not a diffusers pipeline (no model_index.json); save one with `pipeline.save_pretrained(folder)`"
    return (
        f"{backend_id}: weights for {model!r} are not available locally"
        f"{' (HF_HUB_OFFLINE=1)' if offline() else ''}; fetch them with `{download_command(model, include)}` "
        f"or set the back-end option model to a local folder"
    )


def torch_dtype(name: str, device: str, cuda_default: str = "bfloat16"):
    import torch

    if name == "auto":
        return getattr(torch, cuda_default) if device.startswith("cuda") else torch.float32
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


def load_pipeline(
    pipeline_cls: type, opts: DiffusersOptions, backend_id: str, *, cuda_dtype: str = "bfloat16",
    include: tuple[str, ...] = DOWNLOAD_INCLUDE, estimate: Any = None, **kwargs: Any,
):
    """``pipeline_cls.from_pretrained(opts.model)``, local files only when offline or given a folder.

    ``estimate(mode) -> GiB`` lets ``offload: auto`` choose by the card's free memory.

    Raises:
        BackendError: with a one-line hint when the weights are not present locally.
    """
    model = os.path.expanduser(opts.model)
    local = Path(model).is_dir()
    if looks_like_path(opts.model) and not (local and (Path(model) / "model_index.json").is_file()):
        raise BackendError(missing_model_hint(backend_id, opts.model, include))
    device = resolve_device(opts.device)
    variant = opts.weight_variant
    if variant and local and not any(Path(model).glob(f"*/*.{variant}.*")):
        variant = None  # a folder saved without that variant: load what is there
    if variant:
        kwargs["variant"] = variant
    try:
        pipe = pipeline_cls.from_pretrained(
            model, torch_dtype=torch_dtype(opts.dtype, device, cuda_dtype), local_files_only=local or offline(), **kwargs
        )
    except (OSError, ValueError) as e:  # huggingface_hub's not-found errors are OSErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if local or offline() or "not found" in first.lower() or "connect" in first.lower() or "offline" in first.lower():
            raise BackendError(missing_model_hint(backend_id, opts.model, include)) from e
        raise BackendError(f"{backend_id}: could not load {opts.model!r}: {first}") from e
    return place_pipeline(pipe, opts, estimate=estimate)


def free_gib(device: str) -> float:
    """Free memory of a CUDA device in GiB (0 when it cannot be read)."""
    import torch

    try:
        free, _ = torch.cuda.mem_get_info(torch.device(device))
    except Exception:  # no CUDA, or not a CUDA device
        return 0.0
    return free / 2**30


def choose_offload(estimate: Any, free: float, margin: float = 0.9) -> str:
    """``offload: auto``: the lightest mode whose estimated peak fits ``margin`` of the free memory."""
    if estimate is None:
        return "model"
    for mode in OFFLOAD_MODES:
        if estimate(mode) <= free * margin:
            return mode
    return "sequential"


def _modules(pipe) -> dict[str, Any]:
    import torch

    return {name: c for name, c in getattr(pipe, "components", {}).items() if isinstance(c, torch.nn.Module)}


def apply_group_offload(pipe, device: str) -> None:
    """diffusers' group offloading, as its Wan/CogVideoX memory docs set it up: the denoisers and text
    encoder stream in block by block (with a CUDA stream prefetching the next), small parts stay put.

    Uses ``diffusers.hooks.apply_group_offloading`` per component (0.33+), so it runs on a CPU too
    (onload device ``cpu``), which is how the tests exercise it.
    """
    import torch
    from diffusers.hooks import apply_group_offloading

    onload = torch.device(device)
    stream = onload.type == "cuda"
    for name, module in _modules(pipe).items():
        if name.startswith(("transformer", "unet", "text_encoder")):
            apply_group_offloading(module, onload_device=onload, offload_device=torch.device("cpu"),
                                   offload_type="block_level", num_blocks_per_group=1, use_stream=stream)
        else:  # VAE, image encoder: small next to the denoiser, kept on the device
            module.to(onload)


def place_pipeline(pipe, opts: DiffusersOptions, *, estimate: Any = None):
    """Apply device, dtype (only when asked), the offload mode and VAE tiling/slicing."""
    device = resolve_device(opts.device)
    if opts.dtype != "auto":
        pipe.to(dtype=torch_dtype(opts.dtype, device))
    mode = opts.offload
    if mode == "auto":
        mode = choose_offload(estimate, free_gib(device)) if device.startswith("cuda") else "none"
    pipe._storyengine_offload = mode  # what `auto` chose, for the clip's metadata
    if mode != "none" and device != "cpu":
        gpu = device if ":" in device else None
        if mode == "model":
            pipe.enable_model_cpu_offload(device=gpu) if gpu else pipe.enable_model_cpu_offload()
        elif mode == "group":
            apply_group_offload(pipe, device)
        else:
            pipe.enable_sequential_cpu_offload(device=gpu) if gpu else pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(device)
    apply_vae_options(pipe, opts, "")
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe


def apply_vae_options(pipe, opts: DiffusersOptions, backend_id: str) -> None:
    """Switch VAE tiling and slicing to what this shot asks (they are cheap to change between shots).

    Raises:
        BackendError: the shot asks for tiling or slicing and this VAE has neither switch.
    """
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return
    for name, wanted in (("tiling", opts.vae_tiling), ("slicing", opts.vae_slicing)):
        if not hasattr(vae, f"use_{name}"):  # diffusers' AutoencoderMixin raises NotImplementedError then
            if wanted and backend_id:
                raise BackendError(f"{backend_id}: vae_{name} is not available for {type(vae).__name__}; set vae_{name}: false")
            continue
        getattr(vae, f"enable_{name}" if wanted else f"disable_{name}")()


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
    if isinstance(frames, (list, tuple)) and frames and (
        isinstance(frames[0], (list, tuple)) or (isinstance(frames[0], np.ndarray) and frames[0].ndim == 4)
    ):
        return frames[0]
    return frames


def frame_position(i: int, n_src: int, n_dst: int, src_fps: float | None = None, dst_fps: float | None = None) -> float:
    """Source position (fractional frame index) of output frame ``i``.

    With both rates given the mapping keeps time (frame ``i`` at ``i/dst_fps`` seconds); without,
    the source is stretched over the output (first to first, last to last).
    """
    if src_fps and dst_fps:
        return min(n_src - 1.0, i * src_fps / dst_fps)
    if n_dst == 1 or n_src == 1:
        return 0.0
    return i * (n_src - 1) / (n_dst - 1)


def retime_indices(n_src: int, n_dst: int) -> list[int]:
    """Nearest source frame for each output frame (same count: identity)."""
    return [int(round(frame_position(i, n_src, n_dst))) for i in range(n_dst)]


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense optical flow a→b (Farnebäck), in pixels."""
    import cv2

    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def interpolate(a: np.ndarray, b: np.ndarray, t: float, flow_ab: np.ndarray | None = None) -> np.ndarray:
    """A frame ``t`` (0..1) of the way from ``a`` to ``b``: both warped along the flow and blended.

    Pixel ``x`` of the in-between frame is taken from ``a`` at ``x − t·F(x)`` and from ``b`` at
    ``x + (1 − t)·F(x)`` (F: the flow a→b, assumed smooth), weighted ``1 − t`` and ``t``.
    """
    import cv2

    if t <= 1e-6:
        return a
    if t >= 1 - 1e-6:
        return b
    flow = _flow(a, b) if flow_ab is None else flow_ab
    h, w = a.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    fx, fy = flow[..., 0], flow[..., 1]
    wa = cv2.remap(a, gx - t * fx, gy - t * fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    wb = cv2.remap(b, gx + (1 - t) * fx, gy + (1 - t) * fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.clip((1 - t) * wa.astype(np.float32) + t * wb.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)


def fit_frame(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop ``arr`` to the aspect of width×height, then scale uniformly: never a stretch."""
    import cv2

    h, w = arr.shape[:2]
    if (w, h) == (width, height):
        return arr
    target = width / height
    if abs(w / h - target) > 1e-3:
        if w / h > target:  # too wide: cut the sides
            cw = max(1, int(round(h * target)))
            x0 = (w - cw) // 2
            arr = arr[:, x0:x0 + cw]
        else:  # too tall: cut top and bottom
            ch = max(1, int(round(w / target)))
            y0 = (h - ch) // 2
            arr = arr[y0:y0 + ch]
    shrink = arr.shape[1] > width and arr.shape[0] > height
    return cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def stream_frames(
    frames: Any, width: int, height: int, num_frames: int, progress: Progress | None = None,
    *, src_fps: float | None = None, dst_fps: float | None = None,
) -> Iterator[np.ndarray]:
    """Lazily yield ``num_frames`` uint8 RGB frames at width×height from generated frames.

    Frames between two generated ones are motion-compensated (optical flow), not duplicated;
    the picture is cropped to the output aspect and scaled uniformly.
    """
    video = first_video(frames)
    n_src = len(video)
    cache: dict[int, np.ndarray] = {}
    flows: dict[int, np.ndarray] = {}

    def src(j: int) -> np.ndarray:
        if j not in cache:
            for k in [k for k in cache if k < j - 1]:
                del cache[k]
            cache[j] = fit_frame(_to_uint8(video[j]), width, height)
        return cache[j]

    def gen() -> Iterator[np.ndarray]:
        for done in range(1, num_frames + 1):
            pos = frame_position(done - 1, n_src, num_frames, src_fps, dst_fps)
            j = int(np.floor(pos + 1e-6))
            t = pos - j
            if t < 1e-3 or j + 1 >= n_src:
                arr = src(min(j, n_src - 1))
            elif t > 1 - 1e-3:
                arr = src(j + 1)
            else:
                if j not in flows:
                    flows.clear()
                    flows[j] = _flow(src(j), src(j + 1))
                arr = interpolate(src(j), src(j + 1), t, flows[j])
            if progress is not None:
                progress(done, num_frames)
            yield arr

    return gen()


def frames_to_uint8(frames: Any) -> list[np.ndarray]:
    """A generated video (np/PIL/torch, batch or not) as a list of HxWx3 uint8 frames."""
    return [_to_uint8(f) for f in first_video(frames)]


def native_timing_plan(n_out: int, fps_out: float, gen_fps: float, native: int, step: int, fixed: bool) -> tuple[int, list[int]]:
    """(frames generated in all, frames per segment) to cover ``n_out`` frames at ``fps_out``.

    Each segment is a valid count (``step·k + 1``) no longer than the model's native count;
    a segment after the first starts from the previous one's last frame, so it adds one frame
    fewer than it generates. ``fixed``: every segment is exactly ``native`` (learned positions).
    """
    needed = int(np.ceil((max(1, n_out) - 1) * gen_fps / fps_out - 1e-9)) + 1
    if step > 1 and (needed - 1) % step:
        needed = ((needed - 1) // step + 1) * step + 1
    segments: list[int] = []
    covered = 0
    while covered < needed:
        left = needed - covered + (1 if segments else 0)
        seg = native if fixed else min(native, left)
        if step > 1 and (seg - 1) % step:
            seg = min(native, ((seg - 1) // step + 1) * step + 1)
        segments.append(seg)
        covered += seg - (1 if len(segments) > 1 else 0)
    return covered, segments


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


sha256_file = file_sha256  # the one streamed file hash (storyengine.hashing), under the name tests import


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


def _safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        try:
            header = json.loads(f.read(size)) if 2 <= size <= 100_000_000 else {}
        except (ValueError, UnicodeDecodeError):
            header = {}
    return header if isinstance(header, dict) else {}


def adapter_width(path: str | Path) -> int | None:
    """The denoiser width an adapter was trained on: the input size of its first self-attention query LoRA."""
    p = Path(path)
    if not p.is_file():
        return None
    for key, info in sorted(_safetensors_header(p).items()):
        if isinstance(info, dict) and key.endswith(("attn1.to_q.lora_A.weight", "attn1.to_q.lora_A.default.weight")):
            shape = info.get("shape") or []
            return int(shape[1]) if len(shape) == 2 else None
    return None


def model_width(model: str) -> int | None:
    """The denoiser width (heads × head dim) of a model: a local folder's config, or a documented model id."""
    folder = Path(os.path.expanduser(model or ""))
    for sub in ("transformer", "transformer_2"):
        cfg = folder / sub / "config.json"
        if cfg.is_file():
            try:
                c = json.loads(cfg.read_text())
                return int(c["num_attention_heads"]) * int(c["attention_head_dim"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    from .memory import known_width

    return known_width(model)


def check_adapter_size(backend_id: str, adapter: dict[str, Any], model: str) -> None:
    """Refuse, at planning, an adapter trained on another size of the family (a 14B adapter on a 1.3B model).

    Raises:
        BackendError: naming the adapter, both widths and what to do.
    """
    from .memory import known_widths

    have, want = adapter_width(adapter.get("path") or ""), model_width(model)
    if have and want and have != want and have in known_widths():  # a width no released model has: cannot tell
        base = adapter.get("base") or "another model"
        raise BackendError(
            f"{backend_id}: adapter {str(adapter.get('path'))!r} was trained on {base!r} (width {have}) but the "
            f"model {model!r} has width {want}: a LoRA only fits the model size it was trained on; "
            f"train one on {model!r} (storyengine character train-lora --model {model})"
        )


def lora_labels(characters: list[CharacterRef]) -> list[tuple[str, float, dict[str, Any]]]:
    """(adapter name, weight, adapter) for every adapter of the shot's characters, in order."""
    return [
        (adapter_name(char, i), float(adapter.get("weight", 1.0)), adapter)
        for char in characters
        for i, adapter in enumerate(char.adapters)
    ]


def load_into_second_expert(pipe, path: Path, name: str) -> None:
    """Wan 2.2 A14B's low-noise expert: its own ``transformer_2.*`` weights when the file has them
    (``train_lora`` writes both experts), else the same weights as the first (diffusers'
    ``load_into_transformer_2``). The file's LoRA metadata (alpha) applies either way."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        own = [k for k in f.keys() if k.startswith("transformer_2.")]
        if not own:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name, load_into_transformer_2=True)
            return
        state = {"transformer." + k[len("transformer_2."):]: f.get_tensor(k) for k in own}
        raw = (f.metadata() or {}).get("lora_adapter_metadata")
    metadata = None
    if raw:
        packed = json.loads(raw)
        metadata = {"transformer." + k[len("transformer_2."):]: v for k, v in packed.items() if k.startswith("transformer_2.")}
    pipe.load_lora_into_transformer(state, transformer=pipe.transformer_2, adapter_name=name, metadata=metadata, _pipeline=pipe)


def denoiser_parts(pipe, denoiser_attr: str = "transformer") -> list[str]:
    """The pipeline's denoisers by attribute name: ``transformer`` and, for Wan 2.2 A14B, ``transformer_2``."""
    names = [denoiser_attr] + (["transformer_2"] if denoiser_attr == "transformer" else [])
    return [n for n in names if getattr(pipe, n, None) is not None]


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
        denoisers = denoiser_parts(pipe, self.denoiser_attr)
        try:
            for attr in denoisers:  # Wan 2.2 A14B: into both experts
                if attr == "transformer_2":
                    load_into_second_expert(pipe, p, name)
                else:  # folder + weight_name: diffusers 0.35 refuses a bare file path when offline
                    pipe.load_lora_weights(str(p.parent), weight_name=p.name, adapter_name=name)
        except (ValueError, KeyError, RuntimeError) as e:
            self._forget(pipe, name)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            first = first if len(first) <= 160 else first[:157] + "…"
            raise BackendError(f"{self.backend_id}: adapter {str(p)!r} does not fit this model: {first}") from e
        for attr in denoisers:
            if injected_layers(getattr(pipe, attr), name) == 0:
                self._forget(pipe, name)
                raise BackendError(
                    f"{self.backend_id}: adapter {str(p)!r} injected 0 layers into the {attr} "
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
    stays cheap), ``size_multiple`` and ``default_frame_step`` (used before the pipeline loads;
    afterwards both are read from the pipeline), the family's ``native_frames``/``native_fps``,
    and implement :meth:`prepare_inputs`, which returns the exact keyword arguments for the
    pipeline call plus the conditioning labels. ``pipeline=`` hands in an already-built pipeline
    (tests pass tiny random ones); otherwise it is loaded from ``options.model`` on first use.
    """

    version = "2"
    size_multiple: int = 8
    default_frame_step: int = 4
    native_frames: int = 81
    native_fps: int = 16
    fixed_frames: bool = False
    """True when the model only renders ``native_frames`` (learned positional embeddings)."""
    cuda_dtype: str = "bfloat16"
    download_include: tuple[str, ...] = DOWNLOAD_INCLUDE
    family: str = ""
    conditions_on: tuple[str, ...] = ("still", "prompt", "lora")
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

    @classmethod
    def estimate_gib(cls, options: Any, mode: str | None = None) -> float:
        """Estimated peak VRAM (GiB) of ``options.model`` at its native size in ``mode`` (default: the options')."""
        from .memory import estimate_peak_gib

        return estimate_peak_gib(cls, options, mode or options.offload)

    @property
    def pipeline(self):
        """The diffusers pipeline, loaded from ``options.model`` the first time it is needed."""
        if self._pipeline is None:
            opts = self.options
            self._pipeline = load_pipeline(
                self.pipeline_class(opts), opts, self.backend_id, cuda_dtype=self.cuda_dtype,
                include=self.download_include, estimate=lambda mode: self.estimate_gib(opts, mode),
            )
            self._loaded_with = self.options
        return self._pipeline

    # -- What the planner asks before anything loads ----------------------------------------------

    @classmethod
    def frame_step_for(cls, options: Any) -> int:
        return cls.default_frame_step

    @classmethod
    def native_timing(cls, options: Any) -> tuple[int, int]:
        """(frames, fps) the model was trained on; subclasses tell variants apart by model name."""
        return cls.native_frames, cls.native_fps

    @classmethod
    def planned_num_frames(cls, n: int, options: Any) -> int:
        """Native timing or a ``num_frames`` option retime to any count; else snap to the family's rule."""
        if getattr(options, "num_frames", None) is not None:
            return n
        return super().planned_num_frames(n, options)

    @classmethod
    def planned_timing(cls, n_out: int, fps_out: int, options: Any) -> tuple[int, int]:
        """(frames generated, generation fps) for ``n_out`` frames at ``fps_out`` (``plan --json`` shows both)."""
        if options.timing == "plan" or options.num_frames is not None:
            return (options.num_frames or n_out), fps_out
        native, fps = cls.native_timing(options)
        total, _ = native_timing_plan(n_out, fps_out, fps, native, cls.frame_step_for(options), cls.fixed_frames)
        return total, fps

    @classmethod
    def planned_conditioning(cls, characters: list[CharacterRef], options: Any) -> list[str]:
        """``still`` then ``lora:<name>@<weight>`` per adapter (when the family takes LoRA).

        Raises:
            BackendError: an adapter was trained for another family or another model size.
        """
        labels = ["still"]
        if cls.supports_lora:
            for name, weight, adapter in lora_labels(characters):
                check_adapter_base(cls.backend_id, adapter)
                check_adapter_size(cls.backend_id, adapter, options.model)
                labels.append(f"lora:{name}@{weight:g}")
        return labels

    # -- Rules read from the loaded pipeline ------------------------------------------------------

    def frame_step(self) -> int:
        """Valid frame counts are ``step·k + 1`` (the VAE's temporal compression)."""
        pipe = self._pipeline
        for attr in ("vae_scale_factor_temporal", "vae_temporal_compression_ratio"):
            if pipe is not None and isinstance(getattr(pipe, attr, None), int):
                return getattr(pipe, attr)
        return self.default_frame_step

    def pipeline_size_multiple(self) -> int:
        """Width and height must divide by this: the VAE's spatial factor times the denoiser's patch
        (Wan 2.2 TI2V: 16 × 2 = 32), and by the class's ``size_multiple`` where a pipeline checks a
        fixed number itself (LTX 32, SVD 8)."""
        pipe = self._pipeline
        if pipe is None:
            return self.size_multiple
        vae_factor = None
        for attr in ("vae_scale_factor_spatial", "vae_spatial_compression_ratio", "vae_scale_factor"):
            if isinstance(getattr(pipe, attr, None), int):
                vae_factor = getattr(pipe, attr)
                break
        denoiser = getattr(pipe, self.denoiser_attr, None) or getattr(pipe, "transformer_2", None)
        patch = getattr(getattr(denoiser, "config", None), "patch_size", None) or 1
        if isinstance(patch, (list, tuple)):
            patch = max(patch[1:]) if len(patch) == 3 else max(patch)
        return math.lcm(int(vae_factor * patch), self.size_multiple) if vae_factor else self.size_multiple

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
        width, height = generation_size(self.backend_id, plan, opts, self.pipeline_size_multiple())
        num_frames = generation_frames(self.backend_id, plan, opts, self.frame_step())
        return width, height, num_frames

    def prepare_inputs(self, plan: ShotPlan, opts: DiffusersOptions | None = None) -> tuple[dict[str, Any], list[str]]:
        raise NotImplementedError

    def text_inputs(self, plan: ShotPlan, opts: DiffusersOptions) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"prompt": prompt_with_triggers(plan), "negative_prompt": opts.negative_prompt or None}
        if opts.max_sequence_length is not None:
            kwargs["max_sequence_length"] = opts.max_sequence_length
        return kwargs

    # -- Generating -------------------------------------------------------------------------------

    def segments_for(self, plan: ShotPlan, opts: DiffusersOptions) -> tuple[list[int], int]:
        """(frames per generated segment, generation fps) for this plan."""
        if opts.timing == "plan" or opts.num_frames is not None:
            return [opts.num_frames or plan.num_frames], plan.fps
        native, fps = self.loaded_native_timing(opts)
        _, segments = native_timing_plan(plan.num_frames, plan.fps, fps, native, self.frame_step(), self.fixed_frames)
        return segments, fps

    def loaded_native_timing(self, opts: DiffusersOptions) -> tuple[int, int]:
        """Native (frames, fps) once the pipeline is known; by default what the model name says."""
        return self.native_timing(opts)

    def generate(self, plan: ShotPlan, progress: Progress | None = None) -> Clip:
        import tempfile

        from PIL import Image

        # 1. Check inputs: the segments to generate and at what rate
        opts = self.options_for(plan)
        segments, gen_fps = self.segments_for(plan, opts)
        apply_vae_options(self.pipeline, opts, self.backend_id)
        # 2. Denoise and decode each segment (video models denoise all its frames jointly);
        #    a segment after the first starts from the previous one's last frame
        source: list[np.ndarray] = []
        conditioning: list[str] = []
        inputs: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="storyengine-chain-") as tmp:
            seg_plan = plan
            for k, n in enumerate(segments):
                seg_plan = seg_plan.model_copy(update={"num_frames": n, "fps": gen_fps})
                inputs, labels = self.prepare_inputs(seg_plan, opts)
                conditioning = conditioning or labels
                video = frames_to_uint8(self.pipeline(**inputs).frames)
                source.extend(video if k == 0 else video[1:])
                if k + 1 < len(segments):
                    still = Path(tmp) / f"chain-{k}.png"
                    Image.fromarray(video[-1]).save(still)
                    seg_plan = seg_plan.model_copy(update={"still": str(still), "seed": plan.seed + k + 1})
        # 3. Stream frames at the plan's size and count (retimed, motion-compensated)
        native = opts.timing == "native" and opts.num_frames is None
        frames = stream_frames(source, plan.width, plan.height, plan.num_frames, progress,
                               src_fps=gen_fps if native else None, dst_fps=plan.fps if native else None)
        meta = {
            "backend": self.backend_id,
            "model": opts.model if self._loaded_with is not None else f"<{type(self.pipeline).__name__} passed in>",
            "seed": plan.seed,
            "steps": opts.steps,
            "guidance": opts.guidance,
            "generated_size": [inputs.get("width"), inputs.get("height")],
            "generated_frames": len(source),
            "generation_fps": gen_fps,
            "segments": len(segments),
            "offload": getattr(self.pipeline, "_storyengine_offload", None),
            "prompt": inputs.get("prompt"),
            "conditioning": conditioning,
        }
        return Clip(fps=plan.fps, width=plan.width, height=plan.height, num_frames=plan.num_frames, frames=frames, meta=meta)
