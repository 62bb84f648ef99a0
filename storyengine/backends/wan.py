"""Wan 2.1/2.2 image-to-video: the still is the first frame, the prompt says what happens next.

Wraps diffusers' ``WanImageToVideoPipeline`` for all three Wan image-to-video models:

- Wan 2.1 I2V 14B (default): a CLIP image encoder feeds the still's tokens to every block's
  ``add_k_proj``/``add_v_proj``. diffusers splits them from the text at a hard-coded 512 text
  tokens, so ``max_sequence_length`` must stay 512 here (anything else drops the image tokens).
- Wan 2.2 I2V A14B: two experts (``transformer`` for high noise, ``transformer_2`` for low noise,
  switching at ``boundary_ratio``), each with its own guidance (``guidance``, ``guidance_2``);
  character LoRA adapters load into both.
- Wan 2.2 TI2V 5B: a ×16 VAE and ``expand_timesteps`` (the still's latent frame is kept clean),
  so sizes are multiples of 32 and the native timing is 121 frames at 24 fps.

Frame counts are 4k+1 (the Wan VAE compresses time by 4); the size multiple is read from the
loaded pipeline (VAE factor × patch). Native timing: 81 frames at 16 fps (2.2 TI2V: 121 at 24).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..errors import BackendError
from ..specs import ShotPlan
from ._diffusers import DiffusersBackend, DiffusersOptions, generator, load_still

WAN_TEXT_TOKENS = 512
"""diffusers' Wan attention takes everything before the last 512 tokens as image tokens."""


def is_ti2v(model: str) -> bool:
    return "ti2v" in model.lower()


class WanBackend(DiffusersBackend):
    """Wan image-to-video (``WanImageToVideoPipeline``): 2.1 I2V 14B, 2.2 I2V A14B, 2.2 TI2V 5B."""

    backend_id = "wan"
    family = "Wan 2.1 / 2.2 image-to-video"
    supports_lora = True
    size_multiple = 16
    default_frame_step = 4
    native_frames = 81
    native_fps = 16

    class Options(DiffusersOptions):
        model: str = Field("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", description="Hub id or local folder.")
        offload: Literal["auto", "none", "model", "group", "sequential"] = Field(
            "group", description="Default group: the 14B transformer does not fit a 24 GB card whole (see `storyengine backends`)."
        )
        steps: int = Field(40, ge=1, le=500)
        guidance: float = Field(5.0, ge=0.0, le=30.0, description="Guidance (Wan 2.2 A14B: the high-noise expert's).")
        guidance_2: float | None = Field(None, ge=0.0, le=30.0, description="Wan 2.2 A14B low-noise expert's guidance.")
        negative_prompt: str = "static, blurred, low quality, jpeg artifacts, deformed, extra fingers"

    @classmethod
    def pipeline_class(cls, opts: DiffusersOptions) -> type:
        from diffusers import WanImageToVideoPipeline

        return WanImageToVideoPipeline

    @classmethod
    def native_timing(cls, options: Any) -> tuple[int, int]:
        return (121, 24) if is_ti2v(options.model) else (81, 16)

    def loaded_native_timing(self, opts: Any) -> tuple[int, int]:
        """A TI2V pipeline (``expand_timesteps``) is told by its config, whatever its folder is called."""
        if getattr(getattr(self._pipeline, "config", None), "expand_timesteps", False):
            return 121, 24
        return self.native_timing(opts)

    def text_inputs(self, plan: ShotPlan, opts: Any) -> dict[str, Any]:
        kwargs = super().text_inputs(plan, opts)
        transformer = getattr(self.pipeline, "transformer", None)
        if getattr(getattr(transformer, "config", None), "added_kv_proj_dim", None) is not None:
            if opts.max_sequence_length not in (None, WAN_TEXT_TOKENS):
                raise BackendError(
                    f"{self.backend_id}: max_sequence_length must be {WAN_TEXT_TOKENS} for this model (it is "
                    f"{opts.max_sequence_length}): diffusers separates the still's image tokens from the text at "
                    f"{WAN_TEXT_TOKENS} tokens, so another length drops them; leave the option unset"
                )
            kwargs["max_sequence_length"] = WAN_TEXT_TOKENS
        return kwargs

    def prepare_inputs(self, plan: ShotPlan, opts: Any = None) -> tuple[dict[str, Any], list[str]]:
        """Keyword arguments for ``WanImageToVideoPipeline.__call__`` and the conditioning labels."""
        opts = opts or self.options_for(plan)
        pipe = self.pipeline
        # 1. Check inputs
        width, height, num_frames = self.check_inputs(plan, opts)
        two_experts = getattr(pipe.config, "boundary_ratio", None) is not None
        if opts.guidance_2 is not None and not two_experts:
            raise BackendError(
                f"{self.backend_id}: guidance_2 is for Wan 2.2 A14B's low-noise expert; {opts.model!r} has one transformer"
            )
        # 2. Conditioning: the still, then character adapters (into both experts on Wan 2.2 A14B)
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
        if two_experts:
            kwargs["guidance_scale_2"] = opts.guidance if opts.guidance_2 is None else opts.guidance_2
        return kwargs, conditioning
