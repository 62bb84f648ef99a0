"""clip: whole-subject appearance from an open_clip image tower.

For pets, objects and drawn characters (no face to detect), and as a second signal for people.
CLIP is not a detector, so ``embed`` returns the fixed candidate windows of
``windows.candidate_windows`` (whole frame + 26 squares at 3 scales for 16:9), embedded in one
batch; the checker keeps the window that best matches the character. Each crop is padded to a
square with the model's mean colour before the model's own preprocessing, so the resize/centre
crop never cuts the subject.

Weights come from, in this order of preference:

* ``model`` + ``preprocess``: a ready open_clip model and its eval transform (tests, callers
  that already hold one);
* ``pretrained`` = a local weights file: ``.safetensors`` (preferred); ``.pt/.pth/.bin`` only if
  ``torch.load(weights_only=True)`` accepts it, never an arbitrary pickle;
* ``pretrained`` = an open_clip tag (``laion2b_s34b_b79k``): downloaded through the Hugging Face
  hub cache, unless ``HF_HUB_OFFLINE`` is set, in which case only an already cached file is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import EncoderError
from .base import Detection, Encoder, file_digest
from .windows import SCALES, Box, candidate_windows, clip_box

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value, read now."""
    return any(
        os.environ.get(k, "").strip().lower() in {"1", "true", "yes", "on"}
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def cached_weights(cfg: dict[str, Any], cache_dir: str | None = None) -> str | None:
    """Path of an open_clip pretrained cfg's weights already in a local cache, or None. Never downloads."""
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo_id, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        names = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
        if filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
        for name in [*names, filename]:
            found = try_to_load_from_cache(repo_id=repo_id, filename=name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = cfg.get("url", "")
    if url:
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def check_safe_weights(path: Path) -> None:
    """Refuse a weights file that is not safetensors and not loadable with torch's weights_only=True."""
    if path.suffix == ".safetensors":
        return
    if path.suffix not in PICKLE_SUFFIXES:
        raise EncoderError(f"CLIP weights file {path}: unsupported type {path.suffix!r}; use .safetensors")
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError for TorchScript archives, ...
        raise EncoderError(
            f"CLIP weights file {path} was refused: it cannot be loaded with torch.load(weights_only=True) "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). storyengine does not unpickle "
            "arbitrary objects; convert it to .safetensors"
        ) from None


def load_open_clip(
    model_name: str, pretrained: str, cache_dir: str | None = None
) -> tuple[Any, Callable[[Any], Any], str]:
    """Build ``model_name`` with ``pretrained`` weights (tag or file); return (model, eval transform, weights id)."""
    import open_clip

    if model_name not in open_clip.list_models():
        raise EncoderError(f"unknown open_clip model {model_name!r}; e.g. ViT-B-32, ViT-B-16, ViT-L-14")
    kwargs: dict[str, Any] = {"weights_only": True, "cache_dir": cache_dir}
    path = Path(pretrained).expanduser()
    looks_like_file = path.suffix in (".safetensors", *PICKLE_SUFFIXES) or os.sep in pretrained
    if looks_like_file:
        # 1a. A local weights file
        if not path.is_file():
            raise EncoderError(f"CLIP weights file {path} does not exist")
        check_safe_weights(path)
        source, weights_id = str(path), f"sha256:{file_digest(path)}"
    else:
        # 1b. A pretrained tag: hub download, or the cached file when offline
        cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
        if not cfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
            raise EncoderError(
                f"{pretrained!r} is neither a file nor a pretrained tag of {model_name}; its tags: {tags}"
            )
        weights_id = pretrained
        # Weights trained with QuickGELU (e.g. 'openai') need it in the model too.
        kwargs["force_quick_gelu"] = bool(cfg.get("quick_gelu", False))
        source = pretrained
        if hub_offline():
            found = cached_weights(cfg, cache_dir)
            if found is None:
                where = cfg.get("hf_hub") or cfg.get("url")
                raise EncoderError(
                    f"CLIP weights {model_name}/{pretrained} ({where}) are not in the local cache and "
                    "HF_HUB_OFFLINE is set, so they cannot be downloaded. Unset HF_HUB_OFFLINE once to "
                    "fetch them, or pass pretrained=<path to a .safetensors file>"
                )
            check_safe_weights(Path(found))
            # Loading the cached file directly: carry the tag's preprocessing with it.
            source = found
            for key, arg in (("mean", "image_mean"), ("std", "image_std"),
                             ("interpolation", "image_interpolation"), ("resize_mode", "image_resize_mode")):
                if cfg.get(key) is not None:
                    kwargs[arg] = cfg[key]
    # 2. Build the model; open_clip reads the file with weights_only=True
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=source, **kwargs)
    except Exception as e:  # download, shape-mismatch and file errors all surface here
        raise EncoderError(f"cannot load CLIP {model_name} weights {pretrained}: {e}") from e
    return model, preprocess, weights_id


def _state_digest(model: Any) -> str:
    """sha256[:12] over a model's state dict (names and bytes): the identity of weights given in memory."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class ClipEncoder(Encoder):
    name: ClassVar[str] = "clip"
    # The key carries model and weights (instance version "1+<model>/<tag | sha256:<12 hex>>"):
    # vectors of different CLIP weights are never compared.
    version: ClassVar[str] = f"1+{DEFAULT_MODEL}/{DEFAULT_PRETRAINED}"
    licence: ClassVar[str] = "code: MIT (open_clip); weights: per checkpoint (OpenAI CLIP and LAION open_clip: MIT)"
    dim: ClassVar[int] = 512  # ViT-B-32; instances set the loaded model's embed dim
    modality: ClassVar[str] = "appearance"
    # Not measured here (no CLIP weights offline); from DreamBooth (Ruiz et al., CVPR 2023,
    # Table 1), CLIP-I with ViT-B/32 = mean image-image cosine: real photos of the same subject
    # 0.885, subject-faithful generations 0.78-0.80. Unrelated photos typically score
    # 0.4-0.6 with ViT-B/32. Recalibrate with the RUN_SLOW test on real weights.
    same_bound: ClassVar[float] = 0.78
    different_mean: ClassVar[float] = 0.5

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        pretrained: str = DEFAULT_PRETRAINED,
        model: Any = None,
        preprocess: Callable[[Any], Any] | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        scales: tuple[float, ...] = SCALES,
        cache_dir: str | None = None,
    ) -> None:
        """Load an open_clip model, or use the given one.

        Args:
            model_name: open_clip architecture name (``ViT-B-32``).
            pretrained: open_clip pretrained tag, or a local ``.safetensors`` (or weights-only
                ``.pt/.pth/.bin``) file.
            model, preprocess: a ready open_clip model and its eval transform; overrides the two above.
            device: torch device for inference.
            batch_size: windows per forward pass.
            scales: window scales, see ``windows.candidate_windows``.
            cache_dir: open_clip / hub cache folder (default: the hub's).
        """
        import torch

        if (model is None) != (preprocess is None):
            raise EncoderError("ClipEncoder needs both `model` and `preprocess`, or neither")
        if model is None:
            model, preprocess, weights_id = load_open_clip(model_name, pretrained, cache_dir)
        else:
            weights_id = f"custom:{_state_digest(model)}"
        self._torch = torch
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.device = device
        self.batch_size = int(batch_size)
        self.scales = tuple(scales)
        self.version = f"1+{model_name}/{weights_id}"  # type: ignore[misc]
        self.dim = int(self._embed_dim())  # type: ignore[misc]
        mean = getattr(getattr(model, "visual", None), "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        self._pad = tuple(int(round(255 * m)) for m in mean)

    @classmethod
    def settings_kwargs(cls, settings: Any) -> dict[str, Any]:
        return {"model_name": settings.clip_model, "pretrained": settings.clip_pretrained}

    def _embed_dim(self) -> int:
        visual = self.model.visual
        proj = getattr(visual, "proj", None)
        if proj is not None:
            return proj.shape[1]
        return getattr(visual, "output_dim", None) or self._encode([np.zeros((8, 8, 3), np.uint8)]).shape[1]

    def _square(self, crop: np.ndarray) -> Any:
        """Pad ``crop`` to a square with the mean colour, as a PIL image for open_clip's transform."""
        from PIL import Image

        h, w = crop.shape[:2]
        side = max(h, w)
        if h != w:
            canvas = np.empty((side, side, 3), np.uint8)
            canvas[:] = self._pad
            y, x = (side - h) // 2, (side - w) // 2
            canvas[y:y + h, x:x + w] = crop
            crop = canvas
        return Image.fromarray(np.ascontiguousarray(crop))

    def _encode(self, crops: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                batch = torch.stack([self.preprocess(self._square(c)) for c in crops[i:i + self.batch_size]])
                feats = self.model.encode_image(batch.to(self.device)).float()
                out.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    @staticmethod
    def _check(image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise EncoderError(f"clip expects an RGB uint8 HxWx3 image, got {got}")
        return image

    def embed_region(self, image: np.ndarray, box: Box) -> np.ndarray:
        """L2-normalised embedding of ``box`` (x0, y0, x1, y1) of ``image`` (e.g. a photo's subject box)."""
        image = self._check(image)
        try:
            x0, y0, x1, y1 = clip_box(box, image.shape[1], image.shape[0])
        except ValueError as e:
            raise EncoderError(str(e)) from None
        return self._encode([image[y0:y1, x0:x1]])[0]

    def embed(self, image: np.ndarray) -> list[Detection]:
        """One Detection per candidate window (whole frame first); score is 1.0: windows are candidates."""
        image = self._check(image)
        boxes = candidate_windows(image.shape[1], image.shape[0], self.scales)
        vecs = self._encode([image[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes])
        return [Detection(box=b, vector=v, score=1.0) for b, v in zip(boxes, vecs)]
