"""Tiny random diffusers video pipelines, built in code (no hub, no files).

Same habit as diffusers' ``tests/pipelines/<family>/test_*.py`` ``get_dummy_components``:
``torch.manual_seed(0)`` before each component, one or two layers, small hidden sizes. The
shrunken configs keep the flags of the real ones (``scripts/convert_*_to_diffusers.py``):
Wan 2.1 I2V's ``added_kv_proj_dim``/``image_dim`` (image tokens into every block), Wan 2.2
A14B's ``transformer_2`` + ``boundary_ratio`` 0.9, TI2V-5B's ×16 residual VAE with patch 2 and
``expand_timesteps``, CogVideoX's learned positional embeddings, ConsisID's extractor dims ≥ 8.
Every pipeline here renders a 17-frame 64×64 clip in well under a second on a CPU.
Tokenizers are built from an in-memory vocabulary, so nothing is downloaded.
"""

from __future__ import annotations

import string

import torch

SIZE = 64
FRAMES = 17
T5_DIM = 32


def t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = ["<pad>", "</s>", "<unk>", "▁"] + list(string.ascii_lowercase + string.digits)
    vocab = [(p, 0.0 if i < 3 else -1.0 - i * 0.01) for i, p in enumerate(pieces)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def t5_encoder():
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=48, d_model=T5_DIM, d_ff=37, d_kv=8, num_heads=4, num_layers=1)
    return T5EncoderModel(config).eval()


def clip_vision(hidden: int, image_size: int = 32, patch_size: int = 4):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=hidden,
        projection_dim=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        intermediate_size=16,
        patch_size=patch_size,
    )
    return CLIPVisionModelWithProjection(config).eval(), CLIPImageProcessor(crop_size=image_size, size=image_size)


def wan_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def wan_i2v():
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,
        out_channels=16,
        text_dim=T5_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4,
        added_kv_proj_dim=24,  # = heads × head dim, as the real 5120 = 40 × 128
    )
    image_encoder, image_processor = clip_vision(4)
    pipe = WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def wan_transformer(in_channels: int = 36, out_channels: int = 16, seed: int = 0):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=T5_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )


def wan22_a14b():
    """Wan 2.2 I2V A14B: two experts (high noise, low noise), no image encoder, boundary_ratio 0.9."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(), text_encoder=t5_encoder(), vae=wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=wan_transformer(seed=0), transformer_2=wan_transformer(seed=1), boundary_ratio=0.9,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def wan22_vae():
    """Wan 2.2's ×16 VAE: residual, patch 2, 48 latent channels (diffusers' vae22 config, shrunk)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
        latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True],
    )


def wan22_ti2v():
    """Wan 2.2 TI2V 5B: 48-channel latents, expand_timesteps (the still's latent frame stays clean)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(), text_encoder=t5_encoder(), vae=wan22_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=wan_transformer(48, 48), expand_timesteps=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def wan_vace():
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel

    torch.manual_seed(0)
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=T5_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=3,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        vace_layers=[0, 2],
        vace_in_channels=96,
    )
    pipe = WanVACEPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ltx_i2v():
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=T5_DIM,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    pipe = LTXImageToVideoPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=t5_encoder(),
        tokenizer=t5_tokenizer(),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def cogvideox_vae():
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )


def cogvideox_i2v(frames: int = FRAMES):
    """``frames=49``: the real model's learned positional embeddings (sample_frames 49)."""
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel, DDIMScheduler

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=T5_DIM,
        num_layers=1,
        sample_width=SIZE // 8,
        sample_height=SIZE // 8,
        sample_frames=frames,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    pipe = CogVideoXImageToVideoPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=cogvideox_vae(),
        transformer=transformer,
        scheduler=DDIMScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def svd():
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        trained_betas=None,
        use_karras_sigmas=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    # SVD resizes the still to 224×224 for CLIP whatever the processor says.
    image_encoder, feature_extractor = clip_vision(32, image_size=224, patch_size=32)
    pipe = StableVideoDiffusionPipeline(
        vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler, feature_extractor=feature_extractor
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ConsisID's local facial extractor: dims below 8 make the identity path a no-op.
CONSISID_ID_DIM = 8
CONSISID_VIT_DIM = 8


def consisid():
    from diffusers import ConsisIDPipeline, ConsisIDTransformer3DModel, DDIMScheduler

    torch.manual_seed(0)
    transformer = ConsisIDTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=T5_DIM,
        num_layers=1,
        sample_width=SIZE // 8,
        sample_height=SIZE // 8,
        sample_frames=FRAMES,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
        cross_attn_interval=1,
        is_kps=False,
        is_train_face=True,
        cross_attn_dim_head=8,
        cross_attn_num_heads=1,
        LFE_id_dim=CONSISID_ID_DIM,
        LFE_vit_dim=CONSISID_VIT_DIM,
        LFE_depth=1,
        LFE_dim_head=8,
        LFE_num_heads=2,
        LFE_num_id_token=1,
        LFE_num_querie=1,
        LFE_output_dim=21,
        LFE_ff_mult=1,
        LFE_num_scale=1,
    )
    pipe = ConsisIDPipeline(
        tokenizer=t5_tokenizer(),
        text_encoder=t5_encoder(),
        vae=cogvideox_vae(),
        transformer=transformer,
        scheduler=DDIMScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fake_face_embedder(image):
    """Stands in for ConsisID's face models: an identity vector derived from the image's pixels."""
    import numpy as np

    arr = np.asarray(image.convert("RGB").resize((4, 2)), dtype=np.float32) / 127.5 - 1.0
    flat = torch.from_numpy(arr.reshape(-1))
    id_cond = flat[:CONSISID_ID_DIM].reshape(1, CONSISID_ID_DIM)
    id_vit_hidden = [flat[: 2 * CONSISID_VIT_DIM].reshape(1, 2, CONSISID_VIT_DIM)]
    return id_cond, id_vit_hidden


BUILDERS = {
    "wan": wan_i2v,
    "wan-vace": wan_vace,
    "ltx": ltx_i2v,
    "cogvideox": cogvideox_i2v,
    "svd": svd,
    "consisid": consisid,
}
