"""Stable Video Diffusion: image-to-video from the still alone (no prompt, no LoRA).

Wraps diffusers' ``StableVideoDiffusionPipeline``. Any frame count works (the UNet was trained
on 14 or 25 frames shown at ``fps_conditioning`` = 7; longer clips drift, so native timing
generates 25 and chains), sizes are multiples of 8 (trained at 1024×576). Motion is steered by
``motion_bucket_id`` and ``noise_aug_strength`` rather than text. Loaded the way its model card
does: ``torch_dtype=float16, variant="fp16"`` (bf16 breaks the VAE image encoding on older
diffusers, whose ``_encode_vae_image`` does not cast).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..specs import ShotPlan
from ._diffusers import DiffusersBackend, DiffusersOptions, generator, load_still


class SVDBackend(DiffusersBackend):
    """Stable Video Diffusion image-to-video (``StableVideoDiffusionPipeline``)."""

    backend_id = "svd"
    family = "Stable Video Diffusion (img2vid-xt)"
    conditions_on = ("still",)
    supports_lora = False
    size_multiple = 8
    default_frame_step = 1
    native_frames = 25
    native_fps = 7
    cuda_dtype = "float16"
    download_include = ("model_index.json", "*/*.json", "*/*.fp16.safetensors", "feature_extractor/*")
    denoiser_attr = "unet"

    class Options(DiffusersOptions):
        model: str = Field("stabilityai/stable-video-diffusion-img2vid-xt", description="Hub id or local folder.")
        weight_variant: str | None = Field("fp16", description="The fp16 weight files (the model card's recipe, half the download).")
        offload: Literal["auto", "none", "model", "group", "sequential"] = Field("none", description="SVD fits a 24 GB card whole in fp16.")
        vae_tiling: bool = Field(False, description="SVD's temporal VAE has no tiling; lower decode_chunk_size instead.")
        steps: int = Field(25, ge=1, le=500)
        guidance: float = Field(3.0, ge=1.0, le=30.0, description="Guidance at the last frame (max_guidance_scale).")
        min_guidance: float = Field(1.0, ge=1.0, le=30.0, description="Guidance at the first frame.")
        motion_bucket_id: int = Field(127, ge=1, le=255, description="More motion as it grows.")
        noise_aug_strength: float = Field(0.02, ge=0.0, le=1.0, description="Less resemblance to the still, more motion.")
        fps_conditioning: int = Field(7, ge=1, le=60, description="The fps the UNet is told (not the clip's fps).")
        decode_chunk_size: int = Field(8, ge=1, le=64, description="Frames decoded at once (lower: less VRAM).")

    @classmethod
    def native_timing(cls, options: Any) -> tuple[int, int]:
        """25 frames for img2vid-xt (14 for img2vid), shown at the fps the UNet is told."""
        return (25 if "xt" in options.model.lower() else 14), options.fps_conditioning

    @classmethod
    def pipeline_class(cls, opts: DiffusersOptions) -> type:
        from diffusers import StableVideoDiffusionPipeline

        return StableVideoDiffusionPipeline

    def frame_step(self) -> int:
        return 1

    def prepare_inputs(self, plan: ShotPlan, opts: Any = None) -> tuple[dict[str, Any], list[str]]:
        """Keyword arguments for ``StableVideoDiffusionPipeline.__call__`` and the conditioning labels.

        SVD takes no prompt and no adapters: characters' adapters are ignored (see ``supports_lora``).
        """
        opts = opts or self.options_for(plan)
        _ = self.pipeline
        # 1. Check inputs
        width, height, num_frames = self.check_inputs(plan, opts)
        # 2. The call (the still is the only conditioning)
        kwargs: dict[str, Any] = {
            "image": load_still(plan, width, height),
            "height": height,
            "width": width,
            "num_frames": num_frames,
            "num_inference_steps": opts.steps,
            "min_guidance_scale": opts.min_guidance,
            "max_guidance_scale": opts.guidance,
            "fps": opts.fps_conditioning,
            "motion_bucket_id": opts.motion_bucket_id,
            "noise_aug_strength": opts.noise_aug_strength,
            "decode_chunk_size": opts.decode_chunk_size,
            "generator": generator(plan.seed),
            "output_type": "np",
        }
        return kwargs, ["still"]
