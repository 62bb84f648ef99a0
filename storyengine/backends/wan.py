"""Wan 2.1/2.2 image-to-video: the still is the first frame, the prompt says what happens next.

Wraps diffusers' ``WanImageToVideoPipeline``. Frame counts are 4k+1 (the Wan VAE compresses
time by 4), sizes are multiples of 16 (VAE ×8, patch ×2). Character LoRA adapters load into
the transformer.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..specs import ShotPlan
from ._diffusers import DiffusersBackend, DiffusersOptions, generator, load_still


class WanBackend(DiffusersBackend):
    """Wan image-to-video (``WanImageToVideoPipeline``)."""

    backend_id = "wan"
    supports_lora = True
    size_multiple = 16
    default_frame_step = 4

    class Options(DiffusersOptions):
        model: str = Field("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", description="Hub id or local folder.")
        steps: int = Field(40, ge=1, le=500)
        guidance: float = Field(5.0, ge=0.0, le=30.0)
        guidance_2: float | None = Field(None, ge=0.0, le=30.0, description="Wan 2.2 low-noise expert's guidance.")
        negative_prompt: str = "static, blurred, low quality, jpeg artifacts, deformed, extra fingers"

    @classmethod
    def pipeline_class(cls, opts: DiffusersOptions) -> type:
        from diffusers import WanImageToVideoPipeline

        return WanImageToVideoPipeline

    def prepare_inputs(self, plan: ShotPlan, opts: Any = None) -> tuple[dict[str, Any], list[str]]:
        """Keyword arguments for ``WanImageToVideoPipeline.__call__`` and the conditioning labels."""
        opts = opts or self.options_for(plan)
        pipe = self.pipeline
        # 1. Check inputs
        width, height, num_frames = self.check_inputs(plan, opts)
        # 2. Conditioning: the still, then character adapters
        conditioning = ["still"]
        conditioning += self._adapters.apply(pipe, plan.characters)
        # 3. The call
        kwargs: dict[str, Any] = {
            "image": load_still(plan, width, height),
            **self.text_inputs(plan, opts),
            "height": height,
            "width": width,
            "num_frames": num_frames,
            "num_inference_steps": opts.steps,
            "guidance_scale": opts.guidance,
            "generator": generator(plan.seed),
            "output_type": "np",
        }
        if opts.guidance_2 is not None:
            kwargs["guidance_scale_2"] = opts.guidance_2
        return kwargs, conditioning
