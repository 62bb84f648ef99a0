"""Peak-VRAM estimates for the diffusers back-ends, from the real architectures on the meta device.

Parameter counts are not typed in: each documented model's components are built from their
real configs (the ones in diffusers' ``scripts/convert_*_to_diffusers.py`` and the models'
``config.json``) under accelerate's ``init_empty_weights``, which allocates nothing, and
counted. Activations come from a stated formula at the model's native size (tokens × widths
× bytes), so the numbers are estimates for choosing an offload mode, not measurements;
``scripts/bench_gpu.py`` measures real peaks when a GPU is at hand.

Per offload mode, the peak is the largest of the pipeline's stages (text encoding, image
encoding, denoising, VAE decoding):

- ``none``: every component resident, plus the largest stage's activations;
- ``model``: the stage's own component resident (diffusers moves whole models in turn);
- ``group``: for the block-offloaded parts (denoisers, text encoder) only their non-block
  parameters plus two blocks (one computing, one prefetched), with the VAE and image encoder
  resident;
- ``sequential``: one leaf layer at a time.
"""

from __future__ import annotations

import functools
import math
from typing import Any

GIB = 2**30
CUDA_CONTEXT_GIB = 0.5
"""The CUDA context and allocator slack every process pays."""

# -- Real configs --------------------------------------------------------------------------------

WAN21_I2V_14B = {  # scripts/convert_wan_to_diffusers.py, "Wan-I2V-14B-480p"
    "image_dim": 1280, "added_kv_proj_dim": 5120, "attention_head_dim": 128, "cross_attn_norm": True, "eps": 1e-06,
    "ffn_dim": 13824, "freq_dim": 256, "in_channels": 36, "num_attention_heads": 40, "num_layers": 40,
    "out_channels": 16, "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads", "text_dim": 4096,
}
WAN22_I2V_A14B = {**WAN21_I2V_14B, "image_dim": None, "added_kv_proj_dim": None}  # "Wan2.2-I2V-14B-720p", per expert
WAN22_TI2V_5B = {  # "Wan2.2-TI2V-5B"
    "added_kv_proj_dim": None, "attention_head_dim": 128, "cross_attn_norm": True, "eps": 1e-06, "ffn_dim": 14336,
    "freq_dim": 256, "in_channels": 48, "num_attention_heads": 24, "num_layers": 30, "out_channels": 48,
    "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads", "text_dim": 4096,
}
WAN_VACE_1_3B = {  # "Wan-VACE-1.3B"
    "added_kv_proj_dim": None, "attention_head_dim": 128, "cross_attn_norm": True, "eps": 1e-06, "ffn_dim": 8960,
    "freq_dim": 256, "in_channels": 16, "num_attention_heads": 12, "num_layers": 30, "out_channels": 16,
    "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads", "text_dim": 4096,
    "vace_layers": [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28], "vace_in_channels": 96,
}
WAN_VACE_14B = {  # "Wan-VACE-14B"
    **WAN_VACE_1_3B, "ffn_dim": 13824, "num_attention_heads": 40, "num_layers": 40,
    "vace_layers": [0, 5, 10, 15, 20, 25, 30, 35],
}
WAN22_VAE = {  # vae22_diffusers_config (latent statistics left at their defaults: they are not parameters)
    "base_dim": 160, "z_dim": 48, "is_residual": True, "in_channels": 12, "out_channels": 12, "decoder_base_dim": 256,
    "scale_factor_temporal": 4, "scale_factor_spatial": 16, "patch_size": 2,
}
UMT5_XXL = {  # google/umt5-xxl config.json (encoder only is used)
    "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24, "vocab_size": 256384,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32,
}
T5_V1_1_XXL = {  # google/t5-v1_1-xxl config.json (CogVideoX, ConsisID, LTX-Video)
    "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24, "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32,
}
CLIP_VIT_H_14 = {  # laion/CLIP-ViT-H-14-laion2B-s32B-b79K vision tower (Wan 2.1 I2V, SVD)
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
    "patch_size": 14, "image_size": 224, "projection_dim": 1024,
}
COGVIDEOX_5B_I2V = {  # convert_cogvideox_to_diffusers.py: 5B = 42 layers, 48 heads, RoPE; I2V doubles in_channels
    "num_attention_heads": 48, "attention_head_dim": 64, "in_channels": 32, "out_channels": 16, "num_layers": 42,
    "time_embed_dim": 512, "text_embed_dim": 4096, "sample_width": 90, "sample_height": 60, "sample_frames": 49,
    "patch_size": 2, "use_rotary_positional_embeddings": True, "use_learned_positional_embeddings": True,
}
CONSISID_PREVIEW = {  # BestWishYsh/ConsisID-preview transformer/config.json: CogVideoX-5B I2V plus the face blocks
    **{k: v for k, v in COGVIDEOX_5B_I2V.items()}, "cross_attn_interval": 2, "is_kps": False, "is_train_face": True,
}

SVD_VAE = {  # stabilityai/stable-video-diffusion-img2vid-xt vae/config.json
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4, "layers_per_block": 2,
    "latent_channels": 4,
}

# model id → how to build it: components, denoiser config, native (frames, fps, width, height)
MODELS: dict[str, dict[str, Any]] = {
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": {
        "transformer": ("wan", WAN21_I2V_14B), "text_encoder": ("umt5", UMT5_XXL), "image_encoder": ("clip", CLIP_VIT_H_14),
        "vae": ("wan_vae", {}), "native": (81, 16, 832, 480), "vae_spatial": 8, "tile": 256, "decoder_channels": 96,
        "frames_per_decode": 4,
    },
    "Wan-AI/Wan2.2-I2V-A14B-Diffusers": {
        "transformer": ("wan", WAN22_I2V_A14B), "transformer_2": ("wan", WAN22_I2V_A14B), "text_encoder": ("umt5", UMT5_XXL),
        "vae": ("wan_vae", {}), "native": (81, 16, 1280, 720), "vae_spatial": 8, "tile": 256, "decoder_channels": 96,
        "frames_per_decode": 4,
    },
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": {
        "transformer": ("wan", WAN22_TI2V_5B), "text_encoder": ("umt5", UMT5_XXL), "vae": ("wan_vae", WAN22_VAE),
        "native": (121, 24, 1280, 704), "vae_spatial": 16, "tile": 256, "decoder_channels": 256, "frames_per_decode": 4,
    },
    "Wan-AI/Wan2.1-VACE-1.3B-diffusers": {
        "transformer": ("wan_vace", WAN_VACE_1_3B), "text_encoder": ("umt5", UMT5_XXL), "vae": ("wan_vae", {}),
        "native": (81, 16, 832, 480), "vae_spatial": 8, "tile": 256, "decoder_channels": 96, "frames_per_decode": 4,
        "control": True,
    },
    "Wan-AI/Wan2.1-VACE-14B-diffusers": {
        "transformer": ("wan_vace", WAN_VACE_14B), "text_encoder": ("umt5", UMT5_XXL), "vae": ("wan_vae", {}),
        "native": (81, 16, 1280, 720), "vae_spatial": 8, "tile": 256, "decoder_channels": 96, "frames_per_decode": 4,
        "control": True,
    },
    "Lightricks/LTX-Video": {  # LTXVideoTransformer3DModel's defaults are the 2B 0.9.x model
        "transformer": ("ltx", {}), "text_encoder": ("t5", T5_V1_1_XXL), "vae": ("ltx_vae", {}),
        "native": (161, 25, 768, 512), "vae_spatial": 32, "tile": 512, "decoder_channels": 128, "frames_per_decode": 161,
        "frames_per_tile": 16,
    },
    "THUDM/CogVideoX-5b-I2V": {
        "transformer": ("cogvideox", COGVIDEOX_5B_I2V), "text_encoder": ("t5", T5_V1_1_XXL), "vae": ("cogvideox_vae", {}),
        "native": (49, 8, 720, 480), "vae_spatial": 8, "tile": 240 * 360, "decoder_channels": 128, "frames_per_decode": 8,
    },
    "BestWishYsh/ConsisID-preview": {
        "transformer": ("consisid", CONSISID_PREVIEW), "text_encoder": ("t5", T5_V1_1_XXL), "vae": ("cogvideox_vae", {}),
        "native": (49, 8, 720, 480), "vae_spatial": 8, "tile": 240 * 360, "decoder_channels": 128, "frames_per_decode": 8,
        "face_models_params": 0.45e9,  # antelopev2 + EVA02-CLIP-L (insightface/onnx, not a diffusers module)
    },
    "stabilityai/stable-video-diffusion-img2vid-xt": {  # the UNet's and VAE's defaults are SVD's config
        "unet": ("svd_unet", {}), "image_encoder": ("clip", CLIP_VIT_H_14), "vae": ("svd_vae", SVD_VAE),
        "native": (25, 7, 1024, 576), "vae_spatial": 8, "tile": 1024 * 576, "decoder_channels": 128, "frames_per_decode": 8,
    },
}
DENOISERS = ("transformer", "transformer_2", "unet")
ENCODERS = ("text_encoder", "image_encoder")


def _build(kind: str, config: dict[str, Any]):
    """One component of ``kind`` from ``config``; called under ``init_empty_weights`` (meta tensors)."""
    import diffusers
    import transformers

    if kind == "wan":
        return diffusers.WanTransformer3DModel.from_config(config)
    if kind == "wan_vace":
        return diffusers.WanVACETransformer3DModel.from_config(config)
    if kind == "ltx":
        return diffusers.LTXVideoTransformer3DModel.from_config(config)
    if kind == "cogvideox":
        return diffusers.CogVideoXTransformer3DModel.from_config(config)
    if kind == "consisid":
        return diffusers.ConsisIDTransformer3DModel.from_config(config)
    if kind == "svd_unet":
        return diffusers.UNetSpatioTemporalConditionModel.from_config(config)
    if kind == "wan_vae":
        return diffusers.AutoencoderKLWan.from_config(config)
    if kind == "ltx_vae":
        return diffusers.AutoencoderKLLTXVideo.from_config(config)
    if kind == "cogvideox_vae":
        return diffusers.AutoencoderKLCogVideoX.from_config(config)
    if kind == "svd_vae":
        return diffusers.AutoencoderKLTemporalDecoder.from_config(config)
    if kind == "umt5":
        return transformers.UMT5EncoderModel(transformers.UMT5Config(**config))
    if kind == "t5":
        return transformers.T5EncoderModel(transformers.T5Config(**config))
    if kind == "clip":
        return transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**config))
    raise ValueError(f"unknown component kind {kind!r}")


def _largest_blocks(module) -> tuple[int, int]:
    """(parameters of the largest block in the module's largest ModuleList, parameters outside that list)."""
    import torch

    total = sum(p.numel() for p in module.parameters())
    best: list[int] = []
    for child in module.modules():
        if isinstance(child, torch.nn.ModuleList) and len(child) > 1:
            sizes = [sum(p.numel() for p in b.parameters()) for b in child]
            if sum(sizes) > sum(best):
                best = sizes
    return (max(best) if best else total), total - sum(best)


@functools.lru_cache(maxsize=None)
def component_stats(kind: str, config_items: tuple) -> dict[str, int]:
    """Parameter counts of one component built on the meta device: total, largest block, outside blocks, largest leaf."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        module = _build(kind, dict(config_items))
    block, outside = _largest_blocks(module)
    leaf = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in module.modules()), default=0)
    return {"total": sum(p.numel() for p in module.parameters()), "block": block, "outside": outside, "leaf": leaf}


def _freeze(config: dict[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in config.items()))


def model_stats(model: str) -> dict[str, dict[str, int]] | None:
    """Per-component parameter counts of a documented model id (None when it is not one)."""
    spec = MODELS.get(model)
    if spec is None:
        return None
    return {name: component_stats(kind, _freeze(cfg)) for name, (kind, cfg) in
            ((n, spec[n]) for n in (*DENOISERS, *ENCODERS, "vae") if n in spec)}


def known_width(model: str) -> int | None:
    """Denoiser width (heads × head dim) of a documented model id, read from its config."""
    spec = MODELS.get(model)
    if spec is None or "transformer" not in spec:
        return None
    kind, cfg = spec["transformer"]
    if kind == "ltx":
        return 32 * 64  # LTXVideoTransformer3DModel defaults
    return int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])


def known_widths() -> set[int]:
    """Widths of the released models (an adapter of another width was trained on something else)."""
    return {w for w in (known_width(m) for m in MODELS) if w}


def activation_gib(model: str, frames: int | None = None, width: int | None = None, height: int | None = None,
                   bytes_per: int = 2) -> dict[str, float]:
    """Working memory per stage at the native size (or the given one): denoise, decode, decode with tiles.

    Denoise: latent tokens × (4·width + ffn width) × 2 bytes × 2 (conditional and unconditional
    passes batched by CFG), the live tensors of one transformer block with memory-efficient attention.
    Decode: pixels of the frames decoded at once × the decoder's widest channels × 2 bytes × 3
    live tensors; tiling bounds the pixels by the tile.
    """
    spec = MODELS[model]
    n, _, w, h = spec["native"]
    n, w, h = frames or n, width or w, height or h
    den = spec.get("transformer") or spec.get("unet")
    kind, cfg = den
    if kind == "svd_unet":
        tokens, hidden, ffn = n * (h // 8) * (w // 8), 320, 1280  # the UNet's first (widest-resolution) level
    else:
        patch = cfg.get("patch_size", 2)
        patch = patch[-1] if isinstance(patch, (list, tuple)) else (patch or 1)
        t = (n - 1) // 4 + 1 if kind != "ltx" else (n - 1) // 8 + 1
        tokens = t * math.ceil(h / spec["vae_spatial"] / patch) * math.ceil(w / spec["vae_spatial"] / patch)
        heads, head_dim = cfg.get("num_attention_heads", 32), cfg.get("attention_head_dim", 64)
        hidden = heads * head_dim
        ffn = cfg.get("ffn_dim", 4 * hidden)
    denoise = tokens * (4 * hidden + ffn) * bytes_per * 2
    chunk = min(n, spec["frames_per_decode"])
    tile_pixels = spec["tile"] ** 2 if spec["tile"] < 4096 else spec["tile"]
    decode = chunk * h * w * spec["decoder_channels"] * bytes_per * 3  # full-resolution channels × 3 live tensors
    tiled = min(chunk, spec.get("frames_per_tile", chunk)) * min(h * w, tile_pixels) * spec["decoder_channels"] * bytes_per * 3
    return {"denoise": denoise / GIB, "decode": decode / GIB, "decode_tiled": tiled / GIB}


def peak_gib(model: str, mode: str, *, vae_tiling: bool = True, bytes_per: int = 2) -> float | None:
    """Estimated peak VRAM in GiB of ``model`` at its native size under offload ``mode`` (None: unknown model)."""
    stats = model_stats(model)
    if stats is None:
        return None
    spec = MODELS[model]
    act = activation_gib(model, bytes_per=bytes_per)
    decode = act["decode_tiled"] if vae_tiling else act["decode"]
    g = lambda params: params * bytes_per / GIB  # noqa: E731
    extra = g(spec.get("face_models_params", 0)) * 2  # fp32
    total = {name: g(s["total"]) for name, s in stats.items()}
    den = [n for n in DENOISERS if n in stats]
    enc = [n for n in ENCODERS if n in stats]
    if mode == "none":
        peak = sum(total.values()) + max(act["denoise"], decode)
    elif mode == "model":
        stages = [total[n] + act["denoise"] for n in den] + [total[n] for n in enc] + [total["vae"] + decode]
        peak = max(stages)
    elif mode == "group":
        resident = total["vae"] + sum(total[n] for n in enc if n != "text_encoder")
        streamed = lambda n: g(stats[n]["outside"] + 2 * stats[n]["block"])  # noqa: E731
        stages = [streamed(n) + act["denoise"] for n in den] + [streamed(n) for n in enc if n == "text_encoder"]
        peak = resident + max(max(stages), decode)
    elif mode == "sequential":
        leaf = max(g(s["leaf"]) for s in stats.values())
        peak = 2 * leaf + max(act["denoise"], decode)
    else:
        raise ValueError(f"unknown offload mode {mode!r}")
    return round(peak + extra + CUDA_CONTEXT_GIB, 1)


def estimate_peak_gib(backend_cls: type, options: Any, mode: str) -> float:
    """The back-end's estimate for ``options`` (its model id, VAE tiling) under ``mode``; ``auto`` → NaN."""
    if mode == "auto":
        return float("nan")
    bytes_per = 2 if backend_cls.cuda_dtype in ("bfloat16", "float16") or options.dtype in ("bfloat16", "float16") else 4
    if options.dtype == "float32":
        bytes_per = 4
    value = peak_gib(options.model, mode, vae_tiling=options.vae_tiling, bytes_per=bytes_per)
    return float("nan") if value is None else value


def params_billion(model: str) -> dict[str, float] | None:
    """Parameter counts in billions per component (for the docs table)."""
    stats = model_stats(model)
    return None if stats is None else {k: round(v["total"] / 1e9, 2) for k, v in stats.items()}
