"""Train a character LoRA on a video model's transformer from the character's registered photos.

The photos are treated as single-frame clips and trained with the family's own objective
(flow matching for Wan and LTX: ``x_t = (1 − t)·x0 + t·noise``, target ``noise − x0``). Only
peft LoRA layers on the attention projections learn; everything else is frozen. Checkpoints
are written every ``checkpoint_every`` steps and a rerun with ``resume=True`` picks up from
the newest one; per-step noise is seeded from ``(seed, step)``, so a resumed run ends exactly
where an uninterrupted one would. The result is a diffusers-format ``.safetensors`` adapter
that ``load_lora_weights`` reads (the back-ends' character adapters).

For image-to-video transformers (Wan I2V: more input than output channels) the image
conditioning channels are zero during training: a single frame given as its own condition
would teach the adapter to copy, not to know the character.
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


def _load_photo(path: Path, size: int):
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (size, size), method=Image.Resampling.LANCZOS)
    arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
    return arr.permute(2, 0, 1)[None, :, None]  # [1, 3, 1, H, W]


# -- Per-family pieces: encode a photo to normalised latents, run the transformer -------------


def _wan_latents(pipe, pixels):
    import torch

    vae = pipe.vae
    z = vae.encode(pixels.to(vae.dtype)).latent_dist.mode().float()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    return (z - mean) / std


def _wan_forward(pipe, x_t, t, text):
    import torch

    transformer = pipe.transformer
    extra = transformer.config.in_channels - x_t.shape[1]
    if extra > 0:  # image-to-video transformer: empty conditioning (see module docstring)
        x_t = torch.cat([x_t, x_t.new_zeros(x_t.shape[0], extra, *x_t.shape[2:])], dim=1)
    return transformer(hidden_states=x_t, timestep=t * 1000.0, encoder_hidden_states=text["embeds"], return_dict=False)[0]


def _wan_text(pipe, prompt: str, max_sequence_length: int):
    embeds, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=max_sequence_length)
    return {"embeds": embeds.detach()}


def _ltx_latents(pipe, pixels):
    vae = pipe.vae
    z = vae.encode(pixels.to(vae.dtype)).latent_dist.mode().float()
    mean = vae.latents_mean.view(1, -1, 1, 1, 1)
    std = vae.latents_std.view(1, -1, 1, 1, 1)
    return (z - mean) * vae.config.scaling_factor / std


def _ltx_forward(pipe, x_t, t, text):
    transformer = pipe.transformer
    _, _, f, h, w = x_t.shape
    p, pt = transformer.config.patch_size, transformer.config.patch_size_t
    packed = pipe._pack_latents(x_t, p, pt)
    out = transformer(
        hidden_states=packed,
        encoder_hidden_states=text["embeds"],
        timestep=t * 1000.0,
        encoder_attention_mask=text["mask"],
        num_frames=f // pt,
        height=h // p,
        width=w // p,
        rope_interpolation_scale=(pipe.vae_temporal_compression_ratio / 25, pipe.vae_spatial_compression_ratio, pipe.vae_spatial_compression_ratio),
        return_dict=False,
    )[0]
    return pipe._unpack_latents(out, f // pt, h // p, w // p, p, pt)


def _ltx_text(pipe, prompt: str, max_sequence_length: int):
    embeds, mask, _, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=max_sequence_length)
    return {"embeds": embeds.detach(), "mask": mask}


FAMILY = {
    "wan": {"latents": _wan_latents, "forward": _wan_forward, "text": _wan_text, "size": 16, "resolution": 480},
    "ltx": {"latents": _ltx_latents, "forward": _ltx_forward, "text": _ltx_text, "size": 32, "resolution": 512},
}


# -- Checkpoints ------------------------------------------------------------------------------


def _latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    done = sorted(p.parent for p in checkpoint_dir.glob("step-*/state.json"))
    return done[-1] if done else None


def _save_checkpoint(checkpoint_dir: Path, step: int, transformer, optimizer, state: dict[str, Any]) -> None:
    import torch
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder = checkpoint_dir / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    lora = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(transformer, adapter_name=ADAPTER).items()}
    save_file(lora, str(folder / "lora.safetensors"))
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    # state.json last: its presence marks a complete checkpoint.
    (folder / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))


def _load_checkpoint(folder: Path, transformer, optimizer) -> dict[str, Any]:
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(transformer, load_file(str(folder / "lora.safetensors")), adapter_name=ADAPTER)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return json.loads((folder / "state.json").read_text())


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
    max_sequence_length: int = 128,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
    base_model: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter for one character and save it as diffusers-format safetensors.

    Args:
        pipeline_or_components: a loaded diffusers pipeline of the family (Wan T2V/I2V/VACE,
            LTX), or a dict with ``transformer``, ``vae``, ``text_encoder``, ``tokenizer``.
            The pipeline is left as it was: the training adapter is removed afterwards.
        photos: the character's registered photos (each a one-frame clip).
        family: "wan" or "ltx".
        out_path: where the ``.safetensors`` adapter goes.
        trigger: the word that names the character in prompts; the caption is ``"photo of <trigger>"``.
        rank, alpha: LoRA rank and alpha (alpha defaults to rank, i.e. scale 1).
        steps, lr: optimiser steps (AdamW) and learning rate.
        resolution: square training size in pixels (rounded to the family's multiple);
            default 480 (Wan) / 512 (LTX).
        checkpoint_dir: folder for periodic checkpoints (``step-NNNNNN/``); None: no checkpoints.
        checkpoint_every: steps between checkpoints.
        resume: continue from the newest checkpoint in ``checkpoint_dir`` (same settings only).
        seed: seeds LoRA init and the per-step noise/timestep draws.
        progress: ``progress(step, steps, loss)`` after each step.

    Returns:
        Metadata: path, sha256, family, base (the family, for back-end compatibility checks),
        base_model, rank, alpha, steps, lr, trigger, photos, initial_loss and final_loss
        (means over the first/last tenth of the steps), losses, resumed_from.

    Raises:
        BackendError: unknown family, no photos, bad out_path, or a checkpoint from other settings.
    """
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

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
    transformer = pipe.transformer
    device = transformer.device
    size = max(fam["size"], round((resolution or fam["resolution"]) / fam["size"]) * fam["size"])
    alpha = float(alpha if alpha is not None else rank)

    # 2. Frozen inputs: photo latents and the caption's embedding
    with torch.no_grad():
        latents = [fam["latents"](pipe, _load_photo(Path(p), size).to(device)) for p in photos]
        text = fam["text"](pipe, f"photo of {trigger}", max_sequence_length)

    # 3. LoRA layers on the attention projections
    was_training = transformer.training
    transformer.requires_grad_(False)
    torch.manual_seed(seed)
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=list(target_modules)),
        adapter_name=ADAPTER,
    )
    transformer.set_adapter(ADAPTER)
    params = [p for p in transformer.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    fingerprint = {
        "family": family, "rank": rank, "alpha": alpha, "lr": lr, "seed": seed, "size": size, "trigger": trigger,
        "target_modules": list(target_modules), "photos": [file_sha256(Path(p)) for p in photos],
    }

    # 4. Resume
    start, losses, resumed_from = 0, [], None
    if checkpoint_dir is not None and resume:
        latest = _latest_checkpoint(Path(checkpoint_dir))
        if latest is not None:
            state = json.loads((latest / "state.json").read_text())
            differs = {k: (state.get(k), v) for k, v in fingerprint.items() if state.get(k) != v}
            if differs:
                transformer.delete_adapters(ADAPTER)
                name = next(iter(differs))
                raise BackendError(
                    f"train_lora: checkpoint {str(latest)!r} was made with other settings "
                    f"({name}: {differs[name][0]!r} there, {differs[name][1]!r} now); use another checkpoint_dir or resume=False"
                )
            state = _load_checkpoint(latest, transformer, optimizer)
            start, losses, resumed_from = min(state["step"], steps), list(state["losses"])[:steps], state["step"]

    # 5. Training loop (flow matching)
    try:
        transformer.train()
        for step in range(start, steps):
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            x0 = latents[int(torch.randint(len(latents), (1,), generator=g))]
            t = torch.sigmoid(torch.randn(1, generator=g))  # logit-normal timesteps
            noise = torch.randn(x0.shape, generator=g)
            t, noise = t.to(device), noise.to(device)
            x_t = (1.0 - t.view(-1, 1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1, 1) * noise
            target = noise - x0
            pred = fam["forward"](pipe, x_t.to(transformer.dtype), t, text).float()
            loss = torch.nn.functional.mse_loss(pred, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise BackendError(f"train_lora: loss became {losses[-1]} at step {step + 1}; lower lr (now {lr})")
            if progress is not None:
                progress(step + 1, steps, losses[-1])
            if checkpoint_dir is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                _save_checkpoint(Path(checkpoint_dir), step + 1, transformer, optimizer, {**fingerprint, "losses": losses})

        # 6. Save the adapter in diffusers format
        out_path.parent.mkdir(parents=True, exist_ok=True)
        lora_layers = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
        type(pipe).save_lora_weights(
            save_directory=str(out_path.parent),
            transformer_lora_layers=lora_layers,
            weight_name=out_path.name,
            safe_serialization=True,
        )
    finally:
        transformer.delete_adapters(ADAPTER)
        transformer.train(was_training)

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
        "resolution": size,
        "initial_loss": sum(losses[:window]) / window,
        "final_loss": sum(losses[-window:]) / window,
        "losses": losses,
        "resumed_from": resumed_from,
    }


# -- A registered character → an adapter in the registry ---------------------------------------

BASE_FAMILY = {"wan": "wan", "ltx": "ltx"}
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
        base: back-end id whose model is trained (``wan`` or ``ltx``).
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
    opts = backend_cls.Options(**{k: v for k, v in {"model": model, "device": device, "dtype": dtype}.items() if v is not None})
    if pipeline is None:
        pipeline = load_pipeline(backend_cls.pipeline_class(opts), opts, base)
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
