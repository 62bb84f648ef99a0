"""ConsisID: identity-preserving video from a face embedding plus the still.

Wraps diffusers' ``ConsisIDPipeline`` (CogVideoX-based). The character's identity enters as
``id_cond``/``id_vit_hidden`` computed from the first registered photo (the still when the
character has none) by ConsisID's face models — insightface, facexlib and consisid_eva_clip
plus the ``face_encoder`` folder of the ConsisID checkout. When they are not installed the
back-end says so instead of silently rendering without identity (``identity: none`` opts out,
for checkpoints whose transformer was not trained with faces).
Frames are 4k+1 (49 default), sizes multiples of 16, trained at 720×480.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field

from ..errors import BackendError
from ..specs import CharacterRef, ShotPlan
from ._diffusers import DiffusersBackend, DiffusersOptions, generator, load_still, resolve_device

FaceEmbedder = Callable[[Any], tuple[Any, Any]]
"""``embed(pil_image) -> (id_cond, id_vit_hidden)`` as ConsisID's transformer expects them."""


def consisid_face_embedder(model_folder: str, device: str) -> FaceEmbedder:
    """ConsisID's own face pipeline (diffusers ``consisid_utils``), or a BackendError naming what is missing."""
    import importlib.util
    import os

    import torch

    missing = [m for m in ("insightface", "facexlib", "consisid_eva_clip") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendError(
            f"consisid: the face models need {', '.join(missing)} (pip install {' '.join(missing)}); "
            f"or set identity: none to render without a face embedding"
        )
    if not os.path.isdir(os.path.join(model_folder, "face_encoder")):
        raise BackendError(
            f"consisid: no face_encoder folder in {model_folder!r}; download the ConsisID checkout "
            f"(huggingface-cli download BestWishYsh/ConsisID-preview) and set face_models to it"
        )
    from diffusers.pipelines.consisid.consisid_utils import prepare_face_models, process_face_embeddings_infer

    helper_1, helper_2, clip_model, main_model, mean, std = prepare_face_models(model_folder, device, torch.float32)

    def embed(image):
        import numpy as np

        id_cond, id_vit_hidden, _, _ = process_face_embeddings_infer(
            helper_1, clip_model, helper_2, mean, std, main_model, device, torch.float32, np.asarray(image), is_align_face=True
        )
        return id_cond, id_vit_hidden

    return embed


class ConsisIDBackend(DiffusersBackend):
    """ConsisID (``ConsisIDPipeline``): one character's face embedding conditions the clip."""

    backend_id = "consisid"
    supports_lora = True
    max_characters = 1
    size_multiple = 16
    default_frame_step = 4

    class Options(DiffusersOptions):
        model: str = Field("BestWishYsh/ConsisID-preview", description="Hub id or local folder.")
        steps: int = Field(50, ge=1, le=500)
        guidance: float = Field(6.0, ge=0.0, le=30.0)
        use_dynamic_cfg: bool = False
        identity: Literal["face", "none"] = Field("face", description="face: embed the character's face (needs face models).")
        face_models: str | None = Field(None, description="Folder holding face_encoder/; default: the model folder.")

    def __init__(self, options: Any = None, *, pipeline: Any = None, face_embedder: FaceEmbedder | None = None) -> None:
        super().__init__(options, pipeline=pipeline)
        self._face_embedder = face_embedder

    @classmethod
    def pipeline_class(cls, opts: DiffusersOptions) -> type:
        from diffusers import ConsisIDPipeline

        return ConsisIDPipeline

    @classmethod
    def planned_conditioning(cls, characters: list[CharacterRef], options: Any) -> list[str]:
        labels = super().planned_conditioning(characters, options)
        if options.identity == "face":
            labels.insert(1, "face_embedding")
        return labels

    def face_embedder(self, opts: Any) -> FaceEmbedder:
        if self._face_embedder is None:
            folder = opts.face_models or opts.model
            self._face_embedder = consisid_face_embedder(folder, resolve_device(opts.device))
        return self._face_embedder

    def check_inputs(self, plan: ShotPlan, opts: Any) -> tuple[int, int, int]:
        config = self.pipeline.transformer.config
        if config.use_learned_positional_embeddings and (opts.width, opts.height) == (None, None):
            scale = self.pipeline.vae_scale_factor_spatial
            opts = opts.model_copy(update={"width": config.sample_width * scale, "height": config.sample_height * scale})
        return super().check_inputs(plan, opts)

    def prepare_inputs(self, plan: ShotPlan, opts: Any = None) -> tuple[dict[str, Any], list[str]]:
        """Keyword arguments for ``ConsisIDPipeline.__call__`` and the conditioning labels."""
        from PIL import Image, ImageOps

        opts = opts or self.options_for(plan)
        pipe = self.pipeline
        # 1. Check inputs
        width, height, num_frames = self.check_inputs(plan, opts)
        still = load_still(plan, width, height)
        conditioning = ["still"]
        kwargs: dict[str, Any] = {}
        # 2. Identity: face embedding of the character's first photo
        if opts.identity == "face":
            if plan.characters and plan.characters[0].photos:
                with Image.open(plan.characters[0].photos[0]) as im:
                    face = ImageOps.exif_transpose(im).convert("RGB")
            else:
                face = still
            id_cond, id_vit_hidden = self.face_embedder(opts)(face)
            if id_cond is None:
                raise BackendError(f"{self.backend_id}: no face found for identity in shot {plan.shot_id!r}")
            kwargs.update(id_cond=id_cond, id_vit_hidden=id_vit_hidden)
            conditioning.append("face_embedding")
        elif getattr(pipe.transformer.config, "is_train_face", False):
            raise BackendError(
                f"{self.backend_id}: this model was trained with faces and needs one (is_train_face); "
                f"identity: none only works with face-free ConsisID checkpoints"
            )
        conditioning += self._adapters.apply(pipe, plan.characters)
        # 3. The call
        kwargs.update(
            {
                "image": still,
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
        )
        return kwargs, conditioning
