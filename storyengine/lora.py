"""Train a character LoRA on a video model's transformer from the character's registered photos.

Each training sample is a short clip built from the photos: the first frame is one photo (the
"still", as at inference) and the rest another photo of the character (the same one when there
is only one), trained with the family's own objective (flow matching for Wan and LTX:
``x_t = (1 − t)·x0 + t·noise``, target ``noise − x0``). The model is conditioned exactly as the
back-end conditions it at inference: the pipeline's own ``prepare_latents`` builds Wan I2V's
mask + first-frame latents (and CLIP image tokens for Wan 2.1's ``add_k_proj``), Wan 2.2
TI2V's clean first latent frame with per-token timesteps, and VACE's ``control_hidden_states``
from the still-then-masked control video; text is encoded at the pipeline's length (512 for
Wan). Only peft LoRA layers on the attention projections learn; the text and image encoders
and the VAE leave the GPU once the inputs are encoded, and the transformer uses gradient
checkpointing. Wan 2.2 A14B trains an adapter per expert (high-noise steps train
``transformer``, low-noise steps ``transformer_2``) and saves both in one file.

Checkpoints are written every ``checkpoint_every`` steps and a rerun with ``resume=True`` picks
up from the newest one; per-step noise is seeded from ``(seed, step)``, so a resumed run ends
exactly where an uninterrupted one would. The result is a diffusers-format ``.safetensors``
adapter with its LoRA config (rank, alpha) in the file's metadata, which ``load_lora_weights``
reads back (alpha survives).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Literal

from .errors import BackendError

ADAPTER = "storyengine_train"
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TRAINABLE_FAMILIES = ("wan", "ltx")
CLIP_FRAMES = {"wan": 5, "ltx": 9}
"""Frames of a training clip: the still, then the character (one latent frame after the first)."""


def _family_pipeline(family: str, parts: dict[str, Any]):
    """Build the family's text-to-video pipeline around the given components."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if family == "wan":
        from diffusers import WanPipeline as cls
    else:
        from diffusers import LTXPipeline as cls
    scheduler = parts.get("scheduler") or FlowMatchEulerDiscreteScheduler()
    return cls(
        tokenizer=parts["tokenizer"], text_encoder=parts["text_encoder"], vae=parts["vae"],
        transformer=parts["transformer"], scheduler=scheduler,
    )


def _load_image(path: Path, size: int):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (size, size), method=Image.Resampling.LANCZOS)


def _to_pixels(image):
    import numpy as np
    import torch

    arr = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    return arr.permute(2, 0, 1)[None, :, None]  # [1, 3, 1, H, W]


def _load_photo(path: Path, size: int):
    return _to_pixels(_load_image(path, size))


def _clip_pixels(still, photo, frames: int):
    """[1, 3, frames, H, W]: the still, then the photo held."""
    import torch

    return torch.cat([_to_pixels(still)] + [_to_pixels(photo)] * (frames - 1), dim=2)


# -- Per-family pieces: encode to normalised latents, condition as at inference, run -----------


def _wan_latents(pipe, pixels):
    """Normalised Wan latents; the statistics live on the latents' device (a CUDA run must not mix devices)."""
    import torch

    vae = pipe.vae
    z = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode().float()
    mean = torch.tensor(vae.config.latents_mean, dtype=z.dtype).view(1, -1, 1, 1, 1).to(z.device)
    std = torch.tensor(vae.config.latents_std, dtype=z.dtype).view(1, -1, 1, 1, 1).to(z.device)
    return (z - mean) / std


def _wan_condition(pipe, still, size: int, frames: int, device) -> dict[str, Any]:
    """What the Wan back-end's pipeline gives the transformer besides the noisy latents, for this still."""
    import torch
    from PIL import Image

    transformer = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
    cond: dict[str, Any] = {}
    if hasattr(pipe, "prepare_video_latents") and getattr(transformer.config, "vace_layers", None):
        # VACE: the still as frame 0 of the control video (mask 0 = keep), the rest to generate
        grey = Image.new("RGB", (size, size), (127, 127, 127))
        video = [still] + [grey] * (frames - 1)
        mask = [Image.new("L", (size, size), 0)] + [Image.new("L", (size, size), 255)] * (frames - 1)
        video, mask, refs = pipe.preprocess_conditions(video, mask, None, 1, size, size, frames, torch.float32, device)
        latents = pipe.prepare_video_latents(video, mask, refs, None, device)
        cond["control"] = torch.cat([latents, pipe.prepare_masks(mask, refs, None)], dim=1)
    elif hasattr(pipe, "prepare_latents") and hasattr(pipe, "video_processor") and (
        transformer.config.in_channels != transformer.config.out_channels or getattr(pipe.config, "expand_timesteps", False)
    ):
        image = pipe.video_processor.preprocess(still, height=size, width=size).to(device, dtype=torch.float32)
        out = pipe.prepare_latents(image, 1, pipe.vae.config.z_dim, size, size, frames, torch.float32, device, None)
        if getattr(pipe.config, "expand_timesteps", False):
            cond["first_frame"], cond["mask"] = out[1], out[2]
        else:
            cond["condition"] = out[1]
        if getattr(transformer.config, "image_dim", None) is not None and getattr(pipe, "image_encoder", None) is not None:
            cond["image_embeds"] = pipe.encode_image(still, device)
    return cond


def _wan_forward(pipe, transformer, x_t, t, text, cond):
    """The transformer's prediction for ``x_t`` at ``t`` (0..1), conditioned like the pipeline's denoising loop."""
    import torch

    timestep = (t * 1000.0).expand(x_t.shape[0])
    kwargs: dict[str, Any] = {}
    if "condition" in cond:
        x_t = torch.cat([x_t, cond["condition"].to(x_t.dtype)], dim=1)
    elif "mask" in cond:  # Wan 2.2 TI2V: the still's latent frame clean, its tokens at timestep 0
        mask = cond["mask"].to(x_t.dtype)
        x_t = (1 - mask) * cond["first_frame"].to(x_t.dtype) + mask * x_t
        p = transformer.config.patch_size
        timestep = (mask[0][0][:, :: p[1], :: p[2]] * t * 1000.0).flatten().unsqueeze(0).expand(x_t.shape[0], -1)
    elif transformer.config.in_channels > x_t.shape[1]:  # an I2V transformer handed in alone: empty conditioning
        extra = transformer.config.in_channels - x_t.shape[1]
        x_t = torch.cat([x_t, x_t.new_zeros(x_t.shape[0], extra, *x_t.shape[2:])], dim=1)
    if "image_embeds" in cond:
        kwargs["encoder_hidden_states_image"] = cond["image_embeds"].to(x_t.dtype)
    if "control" in cond:
        kwargs["control_hidden_states"] = cond["control"].to(x_t.dtype)
    return transformer(
        hidden_states=x_t, timestep=timestep, encoder_hidden_states=text["embeds"].to(x_t.dtype), return_dict=False, **kwargs
    )[0]


def _wan_text(pipe, prompt: str, max_sequence_length: int | None):
    transformer = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
    if getattr(transformer.config, "added_kv_proj_dim", None) is not None and max_sequence_length not in (None, 512):
        raise BackendError(
            f"train_lora: max_sequence_length must be 512 for a Wan 2.1 I2V transformer (it is {max_sequence_length}): "
            f"diffusers separates the image tokens from the text at 512 tokens"
        )
    kwargs = {} if max_sequence_length is None else {"max_sequence_length": max_sequence_length}
    embeds, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device=pipe.text_encoder.device, **kwargs)
    return {"embeds": embeds.detach()}


def _ltx_latents(pipe, pixels):
    vae = pipe.vae
    z = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode().float()
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(z.device, z.dtype)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(z.device, z.dtype)
    return (z - mean) * vae.config.scaling_factor / std


def _ltx_condition(pipe, still, size: int, frames: int, device) -> dict[str, Any]:
    return {}


def _ltx_forward(pipe, transformer, x_t, t, text, cond):
    _, _, f, h, w = x_t.shape
    p, pt = transformer.config.patch_size, transformer.config.patch_size_t
    packed = pipe._pack_latents(x_t, p, pt)
    out = transformer(
        hidden_states=packed,
        encoder_hidden_states=text["embeds"].to(x_t.dtype),
        timestep=(t * 1000.0).expand(x_t.shape[0]),
        encoder_attention_mask=text["mask"],
        num_frames=f // pt,
        height=h // p,
        width=w // p,
        rope_interpolation_scale=(pipe.vae_temporal_compression_ratio / 25, pipe.vae_spatial_compression_ratio, pipe.vae_spatial_compression_ratio),
        return_dict=False,
    )[0]
    return pipe._unpack_latents(out, f // pt, h // p, w // p, p, pt)


def _ltx_text(pipe, prompt: str, max_sequence_length: int | None):
    kwargs = {} if max_sequence_length is None else {"max_sequence_length": max_sequence_length}
    embeds, mask, _, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device=pipe.text_encoder.device, **kwargs)
    return {"embeds": embeds.detach(), "mask": mask}


FAMILY = {
    "wan": {"latents": _wan_latents, "condition": _wan_condition, "forward": _wan_forward, "text": _wan_text,
            "size": 16, "resolution": 480},
    "ltx": {"latents": _ltx_latents, "condition": _ltx_condition, "forward": _ltx_forward, "text": _ltx_text,
            "size": 32, "resolution": 512},
}


def _experts(pipe) -> list[tuple[str, Any]]:
    """(attribute, transformer) pairs to train: both Wan 2.2 A14B experts, else the one transformer."""
    return [(a, getattr(pipe, a)) for a in ("transformer", "transformer_2") if getattr(pipe, a, None) is not None]


def _expert_for(pipe, experts: list[tuple[str, Any]], t: float) -> int:
    """Which expert denoises timestep ``t`` (0..1): high noise (t ≥ boundary) → transformer, else transformer_2."""
    boundary = getattr(getattr(pipe, "config", None), "boundary_ratio", None)
    if boundary is None or len(experts) == 1:
        return 0
    return 0 if t >= boundary else 1


# -- Checkpoints ------------------------------------------------------------------------------


def _latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    done = sorted(p.parent for p in checkpoint_dir.glob("step-*/state.json"))
    return done[-1] if done else None


def _lora_file(attr: str) -> str:
    return "lora.safetensors" if attr == "transformer" else f"lora-{attr}.safetensors"


def _save_checkpoint(checkpoint_dir: Path, step: int, experts, optimizer, state: dict[str, Any]) -> None:
    import torch
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder = checkpoint_dir / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    for attr, model in experts:
        lora = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model, adapter_name=ADAPTER).items()}
        save_file(lora, str(folder / _lora_file(attr)))
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    # state.json last: its presence marks a complete checkpoint.
    (folder / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))


def _load_checkpoint(folder: Path, experts, optimizer) -> dict[str, Any]:
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    for attr, model in experts:
        set_peft_model_state_dict(model, load_file(str(folder / _lora_file(attr))), adapter_name=ADAPTER)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return json.loads((folder / "state.json").read_text())


def _save_adapter(pipe, experts, out_path: Path) -> None:
    """diffusers-format LoRA file: ``transformer.*`` (and ``transformer_2.*``) keys, the LoRA config in the metadata."""
    from diffusers.loaders.lora_base import LoraBaseMixin
    from peft.utils import get_peft_model_state_dict

    layers: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for attr, model in experts:
        for k, v in get_peft_model_state_dict(model, adapter_name=ADAPTER).items():
            layers[f"{attr}.{k}"] = v.detach().cpu().contiguous()
        config = model.peft_config[ADAPTER].to_dict()
        metadata.update({f"{attr}.{k}": v for k, v in config.items()})
    LoraBaseMixin.write_lora_layers(
        state_dict=layers, save_directory=str(out_path.parent), is_main_process=True, weight_name=out_path.name,
        save_function=None, safe_serialization=True, lora_adapter_metadata=metadata,
    )


# -- Moving the encoders off the GPU while the transformer trains ------------------------------


def _park(pipe, device) -> dict[str, Any]:
    """Move the text/image encoders and the VAE to the CPU (they are done once the inputs are encoded)."""
    import torch

    parked: dict[str, Any] = {}
    if torch.device(device).type == "cpu":
        return parked
    for name in ("text_encoder", "image_encoder", "vae"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            parked[name] = next(module.parameters()).device
            module.to("cpu")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return parked


def _unpark(pipe, parked: dict[str, Any]) -> None:
    for name, device in parked.items():
        getattr(pipe, name).to(device)


# -- Training ---------------------------------------------------------------------------------


def train_lora(
    pipeline_or_components: Any,
    photos: list[Path],
    *,
    family: Literal["wan", "ltx"],
    out_path: Path,
    trigger: str,
    rank: int = 16,
    alpha: float | None = None,
    steps: int = 1000,
    lr: float = 1e-4,
    resolution: int | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    seed: int = 0,
    max_sequence_length: int | None = None,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
    base_model: str | None = None,
    gradient_checkpointing: bool = True,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter for one character and save it as diffusers-format safetensors.

    Args:
        pipeline_or_components: a loaded diffusers pipeline of the family (Wan 2.1/2.2 I2V, T2V,
            VACE; LTX), or a dict with ``transformer``, ``vae``, ``text_encoder``, ``tokenizer``.
            The pipeline is left as it was: the training adapter is removed afterwards and the
            encoders go back where they were.
        photos: the character's registered photos.
        family: "wan" or "ltx".
        out_path: where the ``.safetensors`` adapter goes.
        trigger: the word that names the character in prompts; the caption is ``"photo of <trigger>"``.
        rank, alpha: LoRA rank and alpha (alpha defaults to rank, i.e. scale 1); both are saved
            in the file's metadata, so the adapter reloads at ``alpha / rank``.
        steps, lr: optimiser steps (AdamW) and learning rate.
        resolution: square training size in pixels (rounded to the family's multiple);
            default 480 (Wan) / 512 (LTX).
        checkpoint_dir: folder for periodic checkpoints (``step-NNNNNN/``); None: no checkpoints.
        checkpoint_every: steps between checkpoints.
        resume: continue from the newest checkpoint in ``checkpoint_dir`` (same settings only).
        seed: seeds LoRA init and the per-step noise/timestep draws.
        max_sequence_length: text tokens; default: the pipeline's (what inference uses).
        gradient_checkpointing: recompute activations in the backward pass (needed for 14B on one card).
        progress: ``progress(step, steps, loss)`` after each step.

    Returns:
        Metadata: path, sha256, family, base (the family, for back-end compatibility checks),
        base_model, rank, alpha, steps, lr, trigger, photos, experts, initial_loss and final_loss
        (means over the first/last tenth of the steps), losses, resumed_from.

    Raises:
        BackendError: unknown family, no photos, bad out_path, or a checkpoint from other settings.
    """
    import torch
    from peft import LoraConfig

    from .hashing import file_sha256

    # 1. Check inputs
    if family not in FAMILY:
        raise BackendError(f"train_lora: family {family!r} cannot be trained yet; trainable: {', '.join(TRAINABLE_FAMILIES)}")
    if not photos:
        raise BackendError("train_lora: no photos to train on")
    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise BackendError(f"train_lora: out_path {str(out_path)!r} must end in .safetensors")
    if rank < 1 or steps < 1 or lr <= 0:
        raise BackendError(f"train_lora: rank, steps and lr must be positive (rank={rank}, steps={steps}, lr={lr})")
    fam = FAMILY[family]
    pipe = pipeline_or_components if not isinstance(pipeline_or_components, dict) else _family_pipeline(family, pipeline_or_components)
    experts = _experts(pipe)
    device = experts[0][1].device
    size = max(fam["size"], round((resolution or fam["resolution"]) / fam["size"]) * fam["size"])
    alpha = float(alpha if alpha is not None else rank)
    frames = CLIP_FRAMES[family]

    # 2. Frozen inputs, encoded once: clip latents, the conditioning inference gives, the caption
    images = [_load_image(Path(p), size) for p in photos]
    samples = []
    with torch.no_grad():
        for i, photo in enumerate(images):
            still = images[(i + 1) % len(images)]  # another photo of the character as the first frame
            x0 = fam["latents"](pipe, _clip_pixels(still, photo, frames)).to(device)
            cond = {k: v.to(device) for k, v in fam["condition"](pipe, still, size, frames, device).items()}
            samples.append((x0, cond))
        text = fam["text"](pipe, f"photo of {trigger}", max_sequence_length)
        text = {k: v.to(device) if hasattr(v, "to") else v for k, v in text.items()}
    parked = _park(pipe, device)

    # 3. LoRA layers on the attention projections of every expert
    was_training = [m.training for _, m in experts]
    torch.manual_seed(seed)
    params = []
    for _, model in experts:
        model.requires_grad_(False)
        model.add_adapter(
            LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=list(target_modules)),
            adapter_name=ADAPTER,
        )
        model.set_adapter(ADAPTER)
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
                params.append(p)
        if gradient_checkpointing and getattr(model, "_supports_gradient_checkpointing", False):
            model.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    fingerprint = {
        "family": family, "rank": rank, "alpha": alpha, "lr": lr, "seed": seed, "size": size, "trigger": trigger,
        "target_modules": list(target_modules), "photos": [file_sha256(Path(p)) for p in photos],
        "experts": [a for a, _ in experts],
    }

    def cleanup() -> None:
        for (_, model), mode in zip(experts, was_training):
            if getattr(model, "gradient_checkpointing", False) and hasattr(model, "disable_gradient_checkpointing"):
                model.disable_gradient_checkpointing()
            model.delete_adapters(ADAPTER)
            model.train(mode)
        _unpark(pipe, parked)

    # 4. Resume
    start, losses, resumed_from = 0, [], None
    if checkpoint_dir is not None and resume:
        latest = _latest_checkpoint(Path(checkpoint_dir))
        if latest is not None:
            state = json.loads((latest / "state.json").read_text())
            differs = {k: (state.get(k), v) for k, v in fingerprint.items() if state.get(k, v if k == "experts" else None) != v}
            if differs:
                cleanup()
                name = next(iter(differs))
                raise BackendError(
                    f"train_lora: checkpoint {str(latest)!r} was made with other settings "
                    f"({name}: {differs[name][0]!r} there, {differs[name][1]!r} now); use another checkpoint_dir or resume=False"
                )
            state = _load_checkpoint(latest, experts, optimizer)
            start, losses, resumed_from = min(state["step"], steps), list(state["losses"])[:steps], state["step"]

    # 5. Training loop (flow matching)
    try:
        for _, model in experts:
            model.train()
        for step in range(start, steps):
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            x0, cond = samples[int(torch.randint(len(samples), (1,), generator=g))]
            t = torch.sigmoid(torch.randn(1, generator=g))  # logit-normal timesteps
            noise = torch.randn(x0.shape, generator=g)
            if len(experts) > 1:  # Wan 2.2 A14B: experts take turns, each on its own timestep range
                boundary = float(pipe.config.boundary_ratio)
                t = boundary + (1 - boundary) * t if step % 2 == 0 else boundary * t
            _, model = experts[_expert_for(pipe, experts, float(t))]
            t, noise = t.to(device), noise.to(device)
            x_t = (1.0 - t.view(-1, 1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1, 1) * noise
            target = noise - x0
            pred = fam["forward"](pipe, model, x_t.to(model.dtype), t, text, cond).float()
            if "mask" in cond:  # TI2V: the still's latent frame is given, not predicted
                pred, target = pred[:, :, 1:], target[:, :, 1:]
            loss = torch.nn.functional.mse_loss(pred, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise BackendError(f"train_lora: loss became {losses[-1]} at step {step + 1}; lower lr (now {lr})")
            if progress is not None:
                progress(step + 1, steps, losses[-1])
            if checkpoint_dir is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                _save_checkpoint(Path(checkpoint_dir), step + 1, experts, optimizer, {**fingerprint, "losses": losses})

        # 6. Save the adapter in diffusers format, with its LoRA config (alpha) in the metadata
        out_path.parent.mkdir(parents=True, exist_ok=True)
        _save_adapter(pipe, experts, out_path)
    finally:
        cleanup()

    window = max(1, len(losses) // 10)
    return {
        "path": str(out_path),
        "sha256": file_sha256(out_path),
        "family": family,
        "base": family,
        "base_model": base_model or getattr(getattr(pipe, "config", None), "_name_or_path", None) or family,
        "rank": rank,
        "alpha": alpha,
        "steps": steps,
        "lr": lr,
        "trigger": trigger,
        "photos": len(photos),
        "experts": [a for a, _ in experts],
        "resolution": size,
        "initial_loss": sum(losses[:window]) / window,
        "final_loss": sum(losses[-window:]) / window,
        "losses": losses,
        "resumed_from": resumed_from,
    }


# -- A registered character → an adapter in the registry ---------------------------------------

BASE_FAMILY = {"wan": "wan", "wan-vace": "wan", "ltx": "ltx"}
"""Back-ends whose pipelines can be trained, and the family objective each uses."""


def train_character(
    reg: Any,
    ws: Any,
    handle: str,
    *,
    base: str,
    model: str | None = None,
    trigger: str | None = None,
    weight: float = 1.0,
    rank: int = 16,
    steps: int = 1000,
    lr: float = 1e-4,
    resolution: int | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
    pipeline: Any = None,
    progress: Callable[[int, int, float], None] | None = None,
    save: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train a LoRA for a registered character on ``base``'s model and store it in the registry.

    Args:
        reg, ws: the registry and workspace holding the character.
        handle: the character; its registered photos are the training set.
        base: back-end id whose model is trained (``wan``, ``wan-vace`` or ``ltx``).
        model: hub id or local folder (default: the back-end's default model).
        trigger: the prompt word for the character (default: the handle).
        weight: the adapter weight stored in the registry (used when shots load it).
        rank, steps, lr, resolution, checkpoint_every, resume, seed: as :func:`train_lora`.
        device, dtype: where and how the pipeline loads (as the back-end options).
        pipeline: an already-loaded pipeline (tests pass tiny ones); default: load ``model``.
        progress: ``progress(step, steps, loss)``.
        save: ``save(reg, ws, handle, path, base=…, trigger=…, weight=…, rank=…, steps=…) -> dict``;
            default ``storyengine.characters.add_adapter`` (validates, copies into
            ``characters/<handle>/adapters/``, records sha256/base/trigger/weight/rank/steps).
            ``base`` is the model trained (hub id or folder); back-ends read its family
            (``backends._diffusers.adapter_family``) to refuse it in another family.

    Checkpoints go to ``characters/<handle>/training/<base>-r<rank>/``; a rerun with the same
    settings resumes from the newest one (``resume=False`` starts over).

    Returns:
        The training metadata of :func:`train_lora` plus ``adapter``: what ``save`` returned.

    Raises:
        BackendError: ``base`` cannot be trained, or the model cannot be loaded.
        RegistryError: the handle is not registered or has no photos.
    """
    from . import plugins
    from .backends._diffusers import load_pipeline
    from .errors import RegistryError

    # 1. Check inputs
    if base not in BASE_FAMILY:
        raise BackendError(f"train-lora: back-end {base!r} cannot be trained; trainable: {', '.join(BASE_FAMILY)}")
    reg.character(handle)  # RegistryError naming the handle when unknown
    photos = [Path(ws.root) / p["path"] for p in reg.photos(handle)]
    if not photos:
        raise RegistryError(f"train-lora: character {handle!r} has no registered photos")
    trigger = trigger or handle
    # 2. The pipeline, loaded as the back-end would (offline-aware, one-line hint when missing)
    backend_cls = plugins.backend_class(base)
    # training keeps the transformer on the device (no offload hooks); the encoders leave it after encoding
    settings = {"model": model, "device": device, "dtype": dtype, "offload": "none"}
    opts = backend_cls.Options(**{k: v for k, v in settings.items() if v is not None})
    if pipeline is None:
        pipeline = load_pipeline(backend_cls.pipeline_class(opts), opts, base, cuda_dtype=backend_cls.cuda_dtype,
                                 include=backend_cls.download_include)
    # 3. Train with checkpoints beside the character
    work = Path(ws.character_dir(handle)) / "training" / f"{base}-r{rank}"
    meta = train_lora(
        pipeline, photos, family=BASE_FAMILY[base], out_path=work / f"{handle}-{base}.safetensors", trigger=trigger,
        rank=rank, steps=steps, lr=lr, resolution=resolution, checkpoint_dir=work / "checkpoints",
        checkpoint_every=checkpoint_every, resume=resume, seed=seed, base_model=opts.model, progress=progress,
    )
    # 4. Into the registry
    if save is None:
        from .characters import add_adapter as save
    meta["adapter"] = save(reg, ws, handle, Path(meta["path"]), base=opts.model, trigger=trigger, weight=weight,
                           rank=rank, steps=steps)
    return meta
