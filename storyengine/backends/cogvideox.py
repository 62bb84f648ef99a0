"""CogVideoX image-to-video (CogVideoX-5b-I2V, CogVideoX1.5-5B-I2V).

Wraps diffusers' ``CogVideoXImageToVideoPipeline``. Frame counts are 4k+1 for CogVideoX 1.0
(default 49) and 8k+1 for 1.5 (its transformer also patches time by 2, e.g. 81); the step is
read from the loaded pipeline. Sizes are multiples of 8 (16 with the ×2 patch), and
CogVideoX-5b-I2V, which has learned positional embeddings, only renders its trained size
(720×480) and frame count (49; diffusers silently swaps in sinusoidal positions for any other
count): that is what is generated, then cropped to the plan's aspect (never stretched) and
retimed from its native 8 fps (CogVideoX 1.5: 81 frames at 16 fps).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..errors import BackendError
from ..specs import ShotPlan
from ._diffusers import DiffusersBackend, DiffusersOptions, generator, load_still


class CogVideoXBackend(DiffusersBackend):
    """CogVideoX image-to-video (``CogVideoXImageToVideoPipeline``)."""

    backend_id = "cogvideox"
    family = "CogVideoX 1.0 / 1.5 image-to-video"
    supports_lora = True
    size_multiple = 16
    default_frame_step = 4
    native_frames = 49
    native_fps = 8
    fixed_frames = True

    class Options(DiffusersOptions):
        model: str = Field("THUDM/CogVideoX-5b-I2V", description="Hub id or local folder.")
        offload: Literal["auto", "none", "model", "group", "sequential"] = Field(
            "model", description="Default model (+ VAE tiling): fits a 24 GB card (see `storyengine backends`)."
        )
        steps: int = Field(50, ge=1, le=500)
        guidance: float = Field(6.0, ge=0.0, le=30.0)
        use_dynamic_cfg: bool = Field(True, description="Cosine guidance schedule (recommended with DPM).")

    @classmethod
    def pipeline_class(cls, opts: DiffusersOptions) -> type:
        from diffusers import CogVideoXImageToVideoPipeline

        return CogVideoXImageToVideoPipeline

    @classmethod
    def native_timing(cls, options: Any) -> tuple[int, int]:
        return (81, 16) if "1.5" in options.model else (49, 8)

    def loaded_native_timing(self, opts: Any) -> tuple[int, int]:
        config = getattr(getattr(self._pipeline, "transformer", None), "config", None)
        if config is not None and config.use_learned_positional_embeddings:
            return int(config.sample_frames), self.native_timing(opts)[1]
        return self.native_timing(opts)

    @classmethod
    def frame_step_for(cls, options: Any) -> int:
        """CogVideoX 1.5 also patches time by 2 (8k+1); told apart by its name before it loads."""
        return 8 if "1.5" in options.model else 4

    def frame_step(self) -> int:
        if self._pipeline is None:
            return self.frame_step_for(self.options)
        step = super().frame_step()
        pipe = self._pipeline
        patch_t = getattr(getattr(getattr(pipe, "transformer", None), "config", None), "patch_size_t", None)
        return step * (patch_t or 1)

    def check_inputs(self, plan: ShotPlan, opts: Any) -> tuple[int, int, int]:
        config = self.pipeline.transformer.config
        if config.use_learned_positional_embeddings:
            trained = (config.sample_width * self.pipeline.vae_scale_factor_spatial,
                       config.sample_height * self.pipeline.vae_scale_factor_spatial)
            asked = (opts.width, opts.height)
            if asked != (None, None) and asked != trained:
                raise BackendError(
                    f"{self.backend_id}: this model only renders {trained[0]}x{trained[1]} "
                    f"(learned positional embeddings) but width/height are {opts.width}x{opts.height}"
                )
            opts = opts.model_copy(update={"width": trained[0], "height": trained[1]})
        return super().check_inputs(plan, opts)

    def prepare_inputs(self, plan: ShotPlan, opts: Any = None) -> tuple[dict[str, Any], list[str]]:
        """Keyword arguments for ``CogVideoXImageToVideoPipeline.__call__`` and the conditioning labels."""
        opts = opts or self.options_for(plan)
        pipe = self.pipeline
        # 1. Check inputs
        width, height, num_frames = self.check_inputs(plan, opts)
        # 2. Conditioning: the still, then adapters
        conditioning = ["still"] + self._adapters.apply(pipe, plan.characters)
        # 3. The call
        kwargs: dict[str, Any] = {
            "image": load_still(plan, width, height),
            **self.text_inputs(plan, opts),
            "height": height,
            "width": width,
            "num_frames": num_frames,
            "num_inference_steps": opts.steps,
            "guidance_scale": opts.guidance,
            "use_dynamic_cfg": opts.use_dynamic_cfg,
            "generator": generator(plan.seed),
            "output_type": "np",
        }
        return kwargs, conditioning
