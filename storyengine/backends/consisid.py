"""ConsisID: identity-preserving video from a face embedding plus the still.

Wraps diffusers' ``ConsisIDPipeline`` (CogVideoX-based). The character's identity enters as
``id_cond``/``id_vit_hidden`` computed from the first registered photo (the still when the
character has none) by ConsisID's face models — insightface, facexlib and consisid_eva_clip
plus the ``face_encoder`` folder of the ConsisID snapshot (found in the local hub cache with
``snapshot_download(local_files_only=True)``). As in diffusers' ConsisID recipe, the image the
pipeline is given is the aligned face crop those models return (with its keypoints), not the
scene still (``image: still`` keeps the still). When the face models are not installed the
back-end says so instead of silently rendering without identity (``identity: none`` opts out,
for checkpoints whose transformer was not trained with faces); a photo without a face is
refused by name. Native timing 49 frames at 8 fps (learned positions), sizes multiples of 16,
trained at 720×480 (cropped to the plan's aspect afterwards, never stretched).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field

from ..errors import BackendError
from ..specs import CharacterRef, ShotPlan
from ._diffusers import DiffusersBackend, DiffusersOptions, download_command, generator, load_still, resolve_device

FaceEmbedder = Callable[[Any], tuple]
"""``embed(pil_image) -> (id_cond, id_vit_hidden[, aligned_face_image, face_kps])`` as ConsisID's transformer expects them."""


def face_models_folder(face_models: str | None, model: str) -> str:
    """The folder holding ``face_encoder/``: the option, the model folder, or the model's local hub snapshot.

    Raises:
        BackendError: a hub id whose snapshot is not in the local cache (with the download command).
    """
    import os

    folder = os.path.expanduser(face_models or model)
    if os.path.isdir(folder):
        return folder
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id=folder, local_files_only=True, allow_patterns=["face_encoder/*"])
    except Exception as e:  # LocalEntryNotFoundError, HFValidationError
        raise BackendError(
            f"consisid: the face models for {folder!r} are not in the local hub cache; fetch them with "
            f"`{download_command(folder, ('face_encoder/*',))}` or set face_models to a folder holding face_encoder/"
        ) from e


def consisid_face_embedder(model_folder: str, device: str) -> FaceEmbedder:
    """ConsisID's own face pipeline (diffusers ``consisid_utils``), or a BackendError naming what is missing.

    The embedder returns ``(id_cond, id_vit_hidden, aligned_face_image, face_kps)``.
    """
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
            f"consisid: no face_encoder folder in {model_folder!r}; download it with "
            f"`{download_command('BestWishYsh/ConsisID-preview', ('face_encoder/*',))}` and set face_models to the snapshot"
        )
    from diffusers.pipelines.consisid.consisid_utils import prepare_face_models, process_face_embeddings_infer

    helper_1, helper_2, clip_model, main_model, mean, std = prepare_face_models(model_folder, device, torch.float32)

    def embed(image):
        import numpy as np

        return process_face_embeddings_infer(
            helper_1, clip_model, helper_2, mean, std, main_model, device, torch.float32, np.asarray(image), is_align_face=True
        )

    return embed


class ConsisIDBackend(DiffusersBackend):
    """ConsisID (``ConsisIDPipeline``): one character's face embedding conditions the clip."""

    backend_id = "consisid"
    family = "ConsisID (CogVideoX-5B, identity-preserving)"
    conditions_on = ("still", "prompt", "lora", "face_embedding")
    supports_lora = True
    max_characters = 1
    size_multiple = 16
    default_frame_step = 4
    native_frames = 49
    native_fps = 8
    fixed_frames = True

    class Options(DiffusersOptions):
        model: str = Field("BestWishYsh/ConsisID-preview", description="Hub id or local folder.")
        steps: int = Field(50, ge=1, le=500)
        guidance: float = Field(6.0, ge=0.0, le=30.0)
        use_dynamic_cfg: bool = False
        identity: Literal["face", "none"] = Field("face", description="face: embed the character's face (needs face models).")
        face_models: str | None = Field(None, description="Folder holding face_encoder/; default: the model folder or its local hub snapshot.")
        image: Literal["face", "still"] = Field("face", description="face: the aligned face crop (ConsisID's recipe); still: the scene still.")
        offload: Literal["auto", "none", "model", "group", "sequential"] = Field(
            "model", description="Default model (+ VAE tiling): fits a 24 GB card (see `storyengine backends`)."
        )

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
            folder = face_models_folder(opts.face_models, opts.model)
            self._face_embedder = consisid_face_embedder(folder, resolve_device(opts.device))
        return self._face_embedder

    def loaded_native_timing(self, opts: Any) -> tuple[int, int]:
        config = getattr(getattr(self._pipeline, "transformer", None), "config", None)
        if config is not None and config.use_learned_positional_embeddings:
            return int(config.sample_frames), self.native_fps
        return self.native_timing(opts)

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
        # 2. Identity: face embedding of the character's first photo (and its aligned crop as the image)
        if opts.identity == "face":
            if plan.characters and plan.characters[0].photos:
                source = plan.characters[0].photos[0]
                with Image.open(source) as im:
                    face = ImageOps.exif_transpose(im).convert("RGB")
            else:
                source, face = str(plan.still_path), still
            embedder = self.face_embedder(opts)
            try:
                result = embedder(face)
            except RuntimeError as e:  # facexlib: "facexlib align face fail"; insightface: no detection
                raise BackendError(
                    f"{self.backend_id}: no face found in {source!r} (shot {plan.shot_id!r}): {e}; use a photo with "
                    f"one clear, frontal face, or identity: none"
                ) from e
            id_cond, id_vit_hidden = result[0], result[1]
            if id_cond is None:
                raise BackendError(f"{self.backend_id}: no face found in {source!r} (shot {plan.shot_id!r})")
            kwargs.update(id_cond=id_cond, id_vit_hidden=id_vit_hidden)
            if len(result) >= 4:
                if result[3] is not None:
                    kwargs["kps_cond"] = result[3]
                if opts.image == "face" and result[2] is not None:
                    still = ImageOps.fit(result[2].convert("RGB"), (width, height), method=Image.Resampling.LANCZOS)
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
