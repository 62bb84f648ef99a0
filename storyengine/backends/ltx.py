"""LTX-Video image-to-video: fast, real-time-class video model conditioned on the still.

Wraps diffusers' ``LTXImageToVideoPipeline`` (``variant: i2v``, default) or
``LTXConditionPipeline`` (``variant: condition``, LTX 0.9.5+, the still as a frame-0
condition). Frame counts are 8k+1 (VAE ×8 in time), sizes are multiples of 32 (read from the
loaded pipeline). Native timing: up to 161 frames at 25 fps (the pipeline's ``frame_rate``, which
also scales the transformer's positions); longer shots chain from the last frame.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..specs import ShotPlan
from ._diffusers import DiffusersBackend, DiffusersOptions, generator, load_still


class LTXBackend(DiffusersBackend):
    """LTX-Video (``LTXImageToVideoPipeline`` / ``LTXConditionPipeline``)."""

    backend_id = "ltx"
    family = "LTX-Video 0.9.x (2B)"
    supports_lora = True
    size_multiple = 32
    default_frame_step = 8
    native_frames = 161
    native_fps = 25

    class Options(DiffusersOptions):
        model: str = Field("Lightricks/LTX-Video", description="Hub id or local folder.")
        variant: Literal["i2v", "condition"] = Field("i2v", description="Which diffusers pipeline to load.")
        steps: int = Field(40, ge=1, le=500)
        guidance: float = Field(3.0, ge=0.0, le=30.0)
        negative_prompt: str = "worst quality, inconsistent motion, blurry, jittery, distorted"
        decode_timestep: float = Field(0.05, ge=0.0, le=1.0, description="0.0 for LTX 0.9.0; 0.05 for 0.9.1+.")
        decode_noise_scale: float | None = Field(0.025, ge=0.0, le=1.0)

    @classmethod
    def pipeline_class(cls, opts: Any) -> type:
        from diffusers import LTXConditionPipeline, LTXImageToVideoPipeline

        return LTXConditionPipeline if opts.variant == "condition" else LTXImageToVideoPipeline

    def prepare_inputs(self, plan: ShotPlan, opts: Any = None) -> tuple[dict[str, Any], list[str]]:
        """Keyword arguments for the LTX pipeline call and the conditioning labels."""
        opts = opts or self.options_for(plan)
        pipe = self.pipeline
        # 1. Check inputs
        width, height, num_frames = self.check_inputs(plan, opts)
        # 2. Conditioning: the still (as `image`, or a frame-0 condition), then adapters
        still = load_still(plan, width, height)
        if type(pipe).__name__ == "LTXConditionPipeline":
            from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

            kwargs: dict[str, Any] = {"conditions": [LTXVideoCondition(image=still, frame_index=0)]}
        else:
            kwargs = {"image": still}
        conditioning = ["still"] + self._adapters.apply(pipe, plan.characters)
        # 3. The call
        kwargs.update(
            {
                **self.text_inputs(plan, opts),
                "height": height,
                "width": width,
                "num_frames": num_frames,
                "frame_rate": plan.fps,
                "num_inference_steps": opts.steps,
                "guidance_scale": opts.guidance,
                "decode_timestep": opts.decode_timestep,
                "decode_noise_scale": opts.decode_noise_scale,
                "generator": generator(plan.seed),
                "output_type": "np",
            }
        )
        return kwargs, conditioning
