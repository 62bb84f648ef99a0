"""Wan VACE: image-to-video with the characters' registered photos as reference images.

Wraps diffusers' ``WanVACEPipeline``. The still is given as the first frame of the control
video (mask 0 = keep) and the rest is masked for generation (mask 255). Each reference image
is the subject cut out onto a plain white background, which is what VACE was trained on
(a subject on anything else tends to paste the background into the clip). The cut-out is
OpenCV GrabCut seeded with a centred box (weight-free); pass ``subject_masker=`` for a better
segmenter. Rules as for Wan: 4k+1 frames, sizes divisible by 16.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from pydantic import Field

from ..errors import BackendError
from ..specs import CharacterRef, ShotPlan
from ._diffusers import DiffusersBackend, DiffusersOptions, generator, load_still

SubjectMasker = Callable[[Any], np.ndarray]
"""``masker(pil_image) -> HxW mask`` (truthy = subject)."""


def grabcut_mask(image) -> np.ndarray:
    """Foreground mask of the subject, assumed roughly centred; the whole image if GrabCut finds nothing."""
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mx, my = max(1, w // 20), max(1, h // 20)
    try:
        cv2.grabCut(
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mask, (mx, my, w - 2 * mx, h - 2 * my),
            np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64), 3, cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return np.ones((h, w), bool)
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return fg if fg.mean() > 0.02 else np.ones((h, w), bool)


def on_white(image, mask: np.ndarray):
    """The subject over plain white, cropped to its bounding box with a small margin."""
    from PIL import Image

    rgb = np.asarray(image.convert("RGB")).copy()
    mask = np.asarray(mask).astype(bool)
    rgb[~mask] = 255
    ys, xs = np.nonzero(mask)
    if len(xs):
        pad = max(2, int(0.05 * max(rgb.shape[:2])))
        y0, y1 = max(0, ys.min() - pad), min(rgb.shape[0], ys.max() + pad + 1)
        x0, x1 = max(0, xs.min() - pad), min(rgb.shape[1], xs.max() + pad + 1)
        rgb = rgb[y0:y1, x0:x1]
    return Image.fromarray(rgb)


class WanVaceBackend(DiffusersBackend):
    """Wan VACE (``WanVACEPipeline``) with ``reference_images`` from the characters' photos."""

    backend_id = "wan-vace"
    family = "Wan 2.1 VACE (reference-to-video)"
    conditions_on = ("still", "prompt", "lora", "reference_images")
    supports_lora = True
    supports_reference_images = True
    size_multiple = 16
    default_frame_step = 4
    native_frames = 81
    native_fps = 16

    class Options(DiffusersOptions):
        model: str = Field("Wan-AI/Wan2.1-VACE-1.3B-diffusers", description="Hub id or local folder.")
        steps: int = Field(30, ge=1, le=500)
        guidance: float = Field(5.0, ge=0.0, le=30.0)
        negative_prompt: str = "static, blurred, low quality, jpeg artifacts, deformed, extra fingers"
        reference_images: int = Field(3, ge=0, le=8, description="Photos per shot used as references (all characters).")
        reference_background: str = Field("white", pattern="^(white|keep)$", description="white: cut the subject out.")
        conditioning_scale: float = Field(1.0, ge=0.0, le=2.0)
        keep_still: bool = Field(True, description="Give the still as the first frame (image-to-video).")

    def __init__(self, options: Any = None, *, pipeline: Any = None, subject_masker: SubjectMasker | None = None) -> None:
        super().__init__(options, pipeline=pipeline)
        self.subject_masker = subject_masker or grabcut_mask

    @classmethod
    def pipeline_class(cls, opts: DiffusersOptions) -> type:
        from diffusers import WanVACEPipeline

        return WanVACEPipeline

    @classmethod
    def planned_conditioning(cls, characters: list[CharacterRef], options: Any) -> list[str]:
        labels = super().planned_conditioning(characters, options)
        if not options.keep_still:
            labels.remove("still")
        n_refs = min(options.reference_images, sum(len(c.photos) for c in characters))
        if n_refs:
            labels.insert(1 if options.keep_still else 0, f"reference_images:{n_refs}")
        return labels

    def reference_images(self, plan: ShotPlan, opts: Any) -> list:
        """Up to ``opts.reference_images`` photos, taken round-robin across the shot's characters."""
        from PIL import Image, ImageOps

        queues = [list(c.photos) for c in plan.characters]
        picked: list[str] = []
        while len(picked) < opts.reference_images and any(queues):
            for q in queues:
                if q and len(picked) < opts.reference_images:
                    picked.append(q.pop(0))
        images = []
        for path in picked:
            try:
                with Image.open(path) as im:
                    im = ImageOps.exif_transpose(im).convert("RGB")
            except OSError as e:
                raise BackendError(f"{self.backend_id}: cannot read reference photo {path!r}: {e}") from e
            if opts.reference_background == "white":
                im = on_white(im, self.subject_masker(im))
            images.append(im)
        return images

    def prepare_inputs(self, plan: ShotPlan, opts: Any = None) -> tuple[dict[str, Any], list[str]]:
        """Keyword arguments for ``WanVACEPipeline.__call__`` and the conditioning labels."""
        from PIL import Image

        opts = opts or self.options_for(plan)
        pipe = self.pipeline
        # 1. Check inputs
        width, height, num_frames = self.check_inputs(plan, opts)
        # 2. Control video: the still as frame 0 (kept), grey frames to generate after it
        conditioning: list[str] = []
        kwargs: dict[str, Any] = {}
        if opts.keep_still:
            grey = Image.new("RGB", (width, height), (127, 127, 127))
            kwargs["video"] = [load_still(plan, width, height)] + [grey] * (num_frames - 1)
            kwargs["mask"] = [Image.new("L", (width, height), 0)] + [Image.new("L", (width, height), 255)] * (num_frames - 1)
            conditioning.append("still")
        # 3. Reference images and adapters
        refs = self.reference_images(plan, opts)
        if refs:
            kwargs["reference_images"] = refs
            conditioning.append(f"reference_images:{len(refs)}")
        conditioning += self._adapters.apply(pipe, plan.characters)
        # 4. The call
        kwargs.update(
            {
                **self.text_inputs(plan, opts),
                "conditioning_scale": opts.conditioning_scale,
                "height": height,
                "width": width,
                "num_frames": num_frames,
                "num_inference_steps": opts.steps,
                "guidance_scale": opts.guidance,
                "generator": generator(plan.seed),
                "output_type": "np",
            }
        )
        return kwargs, conditioning
