"""What a real GPU run needs, proven on a CPU: conformance with the pipelines' signatures and flags,
device-correct training helpers (fake CUDA), VRAM estimates from the real architectures,
model-native timing and aspect, memory options, ConsisID/SVD recipes, adapter checks.

Select with ``-k conformance``, ``-k fake_cuda``, ``-k vram``, ``-k native``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

import tiny_pipelines as tp
from storyengine.backends import _diffusers as D
from storyengine.backends.consisid import ConsisIDBackend
from storyengine.backends.wan import WanBackend
from storyengine.errors import BackendError
from storyengine.plugins import backend_class
from storyengine.specs import CharacterRef, ShotPlan

BUILDERS = {**tp.BUILDERS, "wan22-a14b": tp.wan22_a14b, "wan22-ti2v": tp.wan22_ti2v}
BACKEND_OF = {"wan22-a14b": "wan", "wan22-ti2v": "wan"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu-ready")
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(d / "still.png")
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(d / "photo.png")
    return d


@pytest.fixture(scope="module")
def pipes():
    return {}


def pipe_of(pipes, name):
    if name not in pipes:
        pipes[name] = BUILDERS[name]()
    return pipes[name]


def make(pipes, name, **options):
    bid = BACKEND_OF.get(name, name)
    opts = {"steps": 2, "timing": "plan", **options}
    if bid not in ("svd", "wan"):
        opts.setdefault("max_sequence_length", 16)
    extra = {"face_embedder": tp.fake_face_embedder} if bid == "consisid" else {}
    return backend_class(bid)(opts, pipeline=pipe_of(pipes, name), **extra)


def plan(files, bid="wan", *, fps=8, num_frames=17, width=64, height=64, adapters=(), **kw) -> ShotPlan:
    mara = CharacterRef(handle="mara", name="Mara", kind="person", photos=[str(files / "photo.png")], adapters=list(adapters))
    return ShotPlan(series="s", episode_id="e1", shot_id="a", index=0, still=str(files / "still.png"), characters=[mara],
                    prompt="mara looks up", seed=1, fps=fps, width=width, height=height, num_frames=num_frames,
                    duration=num_frames / fps, min_frames=1, backend=bid, **kw)


# -- conformance ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
def test_conformance_every_key_is_a_call_parameter(files, pipes, name):
    backend = make(pipes, name, width=64, height=64)
    kwargs, _ = backend.prepare_inputs(plan(files, BACKEND_OF.get(name, name)))
    accepted = set(inspect.signature(type(backend.pipeline).__call__).parameters)
    assert set(kwargs) <= accepted, set(kwargs) - accepted


def _image_tokens_seen(pipe, **call):
    seen = []
    hook = pipe.transformer.blocks[0].attn2.add_k_proj.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    try:
        pipe(**call)
    finally:
        hook.remove()
    return seen


def test_conformance_image_tokens_reach_add_k_proj_at_defaults(files, pipes):
    backend = make(pipes, "wan", width=64, height=64, num_frames=5)
    kwargs, _ = backend.prepare_inputs(plan(files))
    assert kwargs["max_sequence_length"] == 512
    kwargs["output_type"] = "latent"
    n_image = (32 // 4) ** 2 + 1  # the tiny CLIP: 8×8 patches + class token
    assert set(_image_tokens_seen(backend.pipeline, **kwargs)) == {n_image}
    # the finding: at 16 text tokens diffusers' 512-token split leaves no image tokens at all
    assert set(_image_tokens_seen(backend.pipeline, **{**kwargs, "max_sequence_length": 16})) == {0}
    with pytest.raises(BackendError, match=r"max_sequence_length must be 512 for this model \(it is 16\)"):
        make(pipes, "wan", width=64, height=64, max_sequence_length=16).prepare_inputs(plan(files))


def test_conformance_size_multiple_read_from_the_pipeline(files, pipes):
    assert make(pipes, "wan").pipeline_size_multiple() == 16
    ti2v = make(pipes, "wan22-ti2v")
    assert ti2v.pipeline_size_multiple() == 32  # ×16 VAE × patch 2
    with pytest.raises(BackendError, match="divisible by 32 but are 48 and 64"):
        make(pipes, "wan22-ti2v", width=48, height=64).prepare_inputs(plan(files))
    kwargs, _ = ti2v.prepare_inputs(plan(files, width=80, height=48))  # rounded to 32s
    assert (kwargs["width"], kwargs["height"]) == (96, 64)
    assert make(pipes, "ltx").pipeline_size_multiple() == 32 and make(pipes, "svd").pipeline_size_multiple() == 8


def test_conformance_wan22_guidance_per_expert(files, pipes):
    kwargs, _ = make(pipes, "wan22-a14b", guidance=4.0, guidance_2=3.0).prepare_inputs(plan(files))
    assert (kwargs["guidance_scale"], kwargs["guidance_scale_2"]) == (4.0, 3.0)
    with pytest.raises(BackendError, match="guidance_2 is for Wan 2.2 A14B"):
        make(pipes, "wan", guidance_2=3.0).prepare_inputs(plan(files))


@pytest.fixture(scope="module")
def wan22_adapter(files, pipes):
    from storyengine.lora import train_lora

    pipe = pipe_of(pipes, "wan22-a14b")
    meta = train_lora(pipe, [files / "photo.png", files / "still.png"], family="wan", out_path=files / "w22.safetensors",
                      trigger="mara", rank=4, alpha=16, steps=6, lr=5e-3, resolution=64, seed=1)
    return pipe, meta


def test_conformance_lora_trains_and_lands_in_both_wan22_experts(files, pipes, wan22_adapter):
    from safetensors import safe_open

    pipe, meta = wan22_adapter
    assert meta["experts"] == ["transformer", "transformer_2"]
    with safe_open(meta["path"], "pt") as f:
        keys = list(f.keys())
        saved = json.loads(f.metadata()["lora_adapter_metadata"])
    assert any(k.startswith("transformer.") for k in keys) and any(k.startswith("transformer_2.") for k in keys)
    assert saved["transformer.lora_alpha"] == 16 and saved["transformer_2.r"] == 4
    backend = make(pipes, "wan22-a14b")
    adapter = {"path": meta["path"], "weight": 1.0, "trigger": "mara", "base": "wan", "sha256": meta["sha256"]}
    _, cond = backend.prepare_inputs(plan(files, adapters=[adapter]))
    assert cond == ["still", "lora:mara@1"]
    for attr in ("transformer", "transformer_2"):
        model = getattr(pipe, attr)
        assert D.injected_layers(model, "mara") > 0
        q = model.blocks[0].attn1.to_q
        assert q.scaling["mara"] == 4.0  # alpha 16 / rank 4 survived the reload
    # each expert got its own trained weights (low-noise steps train transformer_2)
    a = pipe.transformer.blocks[0].attn1.to_q.lora_B["mara"].weight
    b = pipe.transformer_2.blocks[0].attn1.to_q.lora_B["mara"].weight
    assert not torch.allclose(a, b)


def test_conformance_adapter_alpha_survives_reload_on_wan21(files, pipes):
    from storyengine.lora import train_lora

    pipe = tp.wan_i2v()
    meta = train_lora(pipe, [files / "photo.png"], family="wan", out_path=files / "a16.safetensors", trigger="mara",
                      rank=4, alpha=16, steps=2, lr=5e-3, resolution=64)
    backend = WanBackend({"steps": 2, "timing": "plan"}, pipeline=pipe)
    adapter = {"path": meta["path"], "weight": 1.0, "trigger": "mara", "base": "wan", "sha256": meta["sha256"]}
    backend.prepare_inputs(plan(files, adapters=[adapter]))
    assert pipe.transformer.blocks[0].attn1.to_q.scaling["mara"] == 4.0  # not 1.0


def test_conformance_vace_and_ti2v_training_run_with_inference_conditioning(files, pipes):
    from storyengine.lora import _wan_condition, train_lora

    vace = pipe_of(pipes, "wan-vace")
    cond = _wan_condition(vace, Image.open(files / "still.png").convert("RGB"), 64, 5, torch.device("cpu"))
    assert cond["control"].shape[1] == vace.transformer.config.vace_in_channels
    meta = train_lora(vace, [files / "photo.png"], family="wan", out_path=files / "vace.safetensors", trigger="mara",
                      rank=4, steps=2, lr=5e-3, resolution=64, max_sequence_length=16)
    assert len(meta["losses"]) == 2 and all(np.isfinite(meta["losses"]))
    ti2v = pipe_of(pipes, "wan22-ti2v")
    cond = _wan_condition(ti2v, Image.open(files / "still.png").convert("RGB"), 64, 5, torch.device("cpu"))
    assert cond["mask"][0, 0, 0].max() == 0 and cond["mask"][0, 0, 1:].min() == 1  # first latent frame given
    meta = train_lora(ti2v, [files / "photo.png"], family="wan", out_path=files / "ti2v.safetensors", trigger="mara",
                      rank=4, steps=2, lr=5e-3, resolution=64, max_sequence_length=16)
    assert all(np.isfinite(meta["losses"]))


def test_conformance_training_uses_gradient_checkpointing_and_restores(files):
    from storyengine.lora import train_lora

    pipe = tp.wan_i2v()
    seen = []
    train_lora(pipe, [files / "photo.png"], family="wan", out_path=files / "gc.safetensors", trigger="mara", rank=4,
               steps=2, lr=5e-3, resolution=64, progress=lambda *_: seen.append(pipe.transformer.gradient_checkpointing))
    assert seen == [True, True] and pipe.transformer.gradient_checkpointing is False


def _lora_file(path: Path, width: int) -> Path:
    save_file({"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, width),
               "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.zeros(width, 4)}, str(path))
    return path


def test_conformance_adapter_for_another_model_size_is_refused_at_planning(files):
    big = _lora_file(files / "wan14b.safetensors", 5120)
    adapter = {"path": str(big), "weight": 1.0, "trigger": "mara", "base": "Wan-AI/Wan2.1-VACE-14B-diffusers"}
    mara = CharacterRef(handle="mara", name="Mara", kind="person", adapters=[adapter])
    cls = backend_class("wan-vace")
    with pytest.raises(BackendError, match=r"width 5120.*'Wan-AI/Wan2.1-VACE-1.3B-diffusers' has width 1536"):
        cls.planned_conditioning([mara], cls.Options())
    small = dict(adapter, path=str(_lora_file(files / "wan13b.safetensors", 1536)))
    assert cls.planned_conditioning([mara.model_copy(update={"adapters": [small]})], cls.Options())[-1] == "lora:mara@1"


# -- fake_cuda -----------------------------------------------------------------------------------


class _FakeVAE:
    """A VAE whose encoding lands on (fake) CUDA, as a real one on a GPU does."""

    class config:  # noqa: N801
        latents_mean = [0.1] * 16
        latents_std = [2.0] * 16

    dtype = torch.float32
    device = torch.device("cuda")

    def encode(self, x):
        z = torch.empty(1, 16, 2, x.shape[-2] // 8, x.shape[-1] // 8, device="cuda")

        class Dist:
            def mode(self):
                return z

        return type("Out", (), {"latent_dist": Dist()})()


def test_fake_cuda_latent_helper_keeps_statistics_on_the_latents_device():
    from torch._subclasses.fake_tensor import FakeTensorMode

    from storyengine.lora import _wan_latents

    pipe = type("P", (), {"vae": _FakeVAE()})()
    with FakeTensorMode(allow_non_fake_inputs=True):
        z = _wan_latents(pipe, torch.empty(1, 3, 5, 64, 64))
        assert z.device.type == "cuda" and tuple(z.shape) == (1, 16, 2, 8, 8)


def test_fake_cuda_training_forward_runs_on_cuda_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    from storyengine.lora import _wan_forward

    pipe = tp.wan22_a14b()
    with FakeTensorMode(allow_non_fake_inputs=True):
        transformer = pipe.transformer.to("cuda")
        x_t = torch.empty(1, 16, 2, 8, 8, device="cuda")
        cond = {"condition": torch.empty(1, 20, 2, 8, 8, device="cuda")}
        text = {"embeds": torch.empty(1, 16, tp.T5_DIM, device="cuda")}
        t = torch.empty(1, device="cuda")
        out = _wan_forward(pipe, transformer, x_t, t, text, cond)
        assert out.device.type == "cuda" and tuple(out.shape) == (1, 16, 2, 8, 8)


def test_conformance_encoders_leave_the_gpu_while_the_transformer_trains():
    from types import SimpleNamespace

    from storyengine.lora import _park, _unpark

    class Recorded(torch.nn.Linear):
        def to(self, *args, **kwargs):
            self.moves.append(str(args[0]))
            return super().to(*args, **kwargs)

    text, vae = Recorded(8, 8), Recorded(8, 8)
    text.moves, vae.moves = [], []
    pipe = SimpleNamespace(text_encoder=text, image_encoder=None, vae=vae)
    assert _park(pipe, torch.device("cpu")) == {} and text.moves == []  # nothing to free on a CPU run
    parked = _park(pipe, torch.device("cuda"))  # the transformer trains on a GPU
    assert set(parked) == {"text_encoder", "vae"} and text.moves == ["cpu"] and vae.moves == ["cpu"]
    _unpark(pipe, parked)
    assert text.moves == ["cpu", "cpu"]  # back where it was (here: the CPU it came from)


# -- vram ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bid", ["wan", "wan-vace", "ltx", "cogvideox", "svd", "consisid"])
def test_vram_default_options_fit_a_24_gb_card(bid):
    cls = backend_class(bid)
    opts = cls.Options()
    estimate = cls.estimate_gib(opts)
    assert 1.0 < estimate < 22.0, (bid, opts.offload, estimate)  # 24 GB = 22.35 GiB


def test_vram_estimates_come_from_the_architectures():
    from storyengine.backends import memory

    wan = WanBackend.Options()
    per_mode = {m: WanBackend.estimate_gib(wan, m) for m in ("none", "model", "group", "sequential")}
    assert per_mode["none"] > 40 and per_mode["model"] > 24  # Wan 2.1 I2V 14B whole: ~45 GB of weights
    assert per_mode["group"] < 24 and per_mode["none"] > per_mode["model"] > per_mode["group"]
    params = memory.params_billion("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    assert 16.0 < params["transformer"] < 17.0 and 6.5 < params["text_encoder"] < 7.0  # 14B + image layers; UMT5-XXL
    assert memory.params_billion("Wan-AI/Wan2.1-VACE-1.3B-diffusers")["transformer"] < 2.5
    a14b = memory.params_billion("Wan-AI/Wan2.2-I2V-A14B-Diffusers")
    assert a14b["transformer"] == a14b["transformer_2"] > 14
    assert memory.known_width("Wan-AI/Wan2.1-VACE-14B-diffusers") == 5120
    # tiling matters where decoding is large (LTX decodes all 161 frames at once untiled)
    ltx = backend_class("ltx").Options()
    assert backend_class("ltx").estimate_gib(ltx.model_copy(update={"vae_tiling": False}), "model") > \
        backend_class("ltx").estimate_gib(ltx, "model") + 10


def test_vram_auto_picks_the_lightest_mode_that_fits():
    wan = WanBackend.Options()
    estimate = lambda mode: WanBackend.estimate_gib(wan, mode)  # noqa: E731
    assert D.choose_offload(estimate, free=79.0) == "none"  # an 80 GB card holds Wan 2.1 14B whole
    a14b = wan.model_copy(update={"model": "Wan-AI/Wan2.2-I2V-A14B-Diffusers"})
    assert D.choose_offload(lambda mode: WanBackend.estimate_gib(a14b, mode), free=79.0) == "model"
    assert D.choose_offload(estimate, free=60.0) == "none"
    assert D.choose_offload(estimate, free=23.0) == "group"
    assert D.choose_offload(estimate, free=4.0) == "sequential"


def test_vram_backends_command_lists_every_backend_with_estimates():
    from typer.testing import CliRunner

    from storyengine.cli import app

    res = CliRunner().invoke(app, ["backends", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["backend"]: r for r in json.loads(res.stdout)}
    assert set(rows) >= {"wan", "wan-vace", "ltx", "cogvideox", "svd", "consisid", "motion"}
    assert (rows["wan"]["native_frames"], rows["wan"]["native_fps"], rows["wan"]["size_multiple"]) == (81, 16, 16)
    assert rows["cogvideox"]["native_frames"] == 49 and rows["svd"]["conditions_on"] == ["still"]
    assert "face_embedding" in rows["consisid"]["conditions_on"] and "reference_images" in rows["wan-vace"]["conditions_on"]
    assert rows["wan"]["vram_gib_per_offload"]["none"] > 40 and rows["wan"]["vram_gib"] < 22


# -- native timing and aspect --------------------------------------------------------------------


def test_native_wan_5s_shot_is_planned_as_81_frames_at_16_fps():
    opts = WanBackend.Options()
    n_out = WanBackend.planned_num_frames(5 * 24, opts)
    assert n_out == 121  # the series' 24 fps (snapped to 4k+1 as before)
    assert WanBackend.planned_timing(n_out, 24, opts) == (81, 16)
    assert WanBackend.planned_timing(241, 24, opts) == (161, 16)  # 10 s: two chained segments of 81
    ti2v = opts.model_copy(update={"model": "Wan-AI/Wan2.2-TI2V-5B-Diffusers"})
    assert WanBackend.planned_timing(121, 24, ti2v) == (121, 24)
    cog = backend_class("cogvideox")
    assert cog.planned_timing(49, 24, cog.Options()) == (49, 8)  # learned positions: always 49
    assert WanBackend.planned_timing(121, 24, opts.model_copy(update={"timing": "plan"})) == (121, 24)


def test_native_plan_json_shows_generation_frames_and_fps(tmp_path, ws, reg, person_photos):
    from storyengine.planner import load_series, plan_series
    from storyengine.register import register_character

    register_character(reg, ws, "mara", person_photos, kind="person")
    Image.new("RGB", (64, 36), (90, 90, 90)).save(tmp_path / "still.png")
    spec = tmp_path / "s.yaml"
    spec.write_text("series: s\nseed: 1\nbackend: wan\nfps: 24\nwidth: 640\nheight: 360\nepisodes:\n  - id: e1\n    shots:\n"
                    "      - id: a\n        still: still.png\n        characters: [mara]\n        duration: 5\n        prompt: x\n")
    (p,) = plan_series(load_series(spec), spec, reg, ws)
    assert (p.num_frames, p.fps, p.generation_frames, p.generation_fps) == (121, 24, 81, 16)
    assert json.loads(p.model_dump_json())["generation_fps"] == 16


def test_native_generation_is_retimed_with_motion_compensation(files, pipes):
    backend = make(pipes, "wan", timing="native", width=64, height=64)
    clip = backend.generate(plan(files, fps=24, num_frames=25))  # 1 s at 24 fps
    video = np.stack(list(clip.frames))
    assert video.shape == (25, 64, 64, 3)
    assert (clip.meta["generated_frames"], clip.meta["generation_fps"], clip.meta["segments"]) == (17, 16, 1)
    # the same 17 frames generated directly at 16 fps: output frame i sits at source position i·16/24
    source = np.stack(list(make(pipes, "wan", width=64, height=64).generate(plan(files, fps=16, num_frames=17)).frames))
    assert np.array_equal(video[0], source[0]) and np.array_equal(video[3], source[2]) and np.array_equal(video[24], source[16])
    assert not np.array_equal(video[1], source[0]) and not np.array_equal(video[1], source[1])


def test_native_cogvideox_always_generates_its_49_learned_frames(files):
    pipe = tp.cogvideox_i2v(frames=49)
    backend = backend_class("cogvideox")({"steps": 2, "max_sequence_length": 16}, pipeline=pipe)
    clip = backend.generate(plan(files, "cogvideox", fps=8, num_frames=9))  # a 1 s shot
    assert (clip.meta["generated_frames"], clip.meta["generation_fps"]) == (49, 8)
    assert clip.meta["generated_size"] == [64, 64] and len(list(clip.frames)) == 9


def test_native_longer_shots_chain_from_the_last_frame(files, pipes):
    class Short(WanBackend):
        @classmethod
        def native_timing(cls, options):
            return 9, 16

    backend = Short({"steps": 2, "width": 64, "height": 64}, pipeline=pipe_of(pipes, "wan"))
    clip = backend.generate(plan(files, fps=8, num_frames=17))  # 2 s: 33 frames at 16 fps
    assert (clip.meta["segments"], clip.meta["generated_frames"]) == (4, 33)
    assert len(list(clip.frames)) == 17


def test_native_interpolation_moves_content_instead_of_duplicating():
    a = np.zeros((48, 64, 3), np.uint8)
    b = a.copy()
    a[16:32, 8:24] = 255
    b[16:32, 24:40] = 255  # the square moved 16 px right
    mid = D.interpolate(a, b, 0.5)
    xs = np.nonzero(mid[..., 0] > 128)[1]
    assert abs(xs.mean() - 23.5) < 3  # halfway (a cross-fade would leave two half-bright squares)
    frames = list(D.stream_frames([a, b], 64, 48, 3, src_fps=8, dst_fps=16))
    assert np.array_equal(frames[0], a) and np.array_equal(frames[2], b) and not np.array_equal(frames[1], a)


def test_native_interpolation_recovers_the_in_between_frame():
    import cv2

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((120, 200, 3)) * 255).astype(np.float32), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    view = lambda dx: texture[:, 20 - dx:180 - dx]  # noqa: E731  (a camera pan)
    a, b, truth = view(0), view(8), view(4)
    err = lambda x: np.abs(x.astype(float) - truth)[10:-10, 10:-10].mean()  # noqa: E731
    mid = D.interpolate(a, b, 0.5)
    assert err(mid) < 3 and err(mid) < err((a.astype(float) + b) / 2) / 5 and err(mid) < err(a) / 10


def test_native_a_circle_stays_round_through_the_aspect_path():
    frame = Image.new("RGB", (720, 480), (0, 0, 0))  # CogVideoX's only size, 3:2
    ImageDraw.Draw(frame).ellipse((260, 140, 460, 340), fill=(255, 255, 255))  # a 200 px circle
    (out,) = list(D.stream_frames([np.asarray(frame)], 640, 360, 1))  # the plan: 16:9
    ys, xs = np.nonzero(out[..., 0] > 128)
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert out.shape == (360, 640, 3) and abs(w / h - 1) < 0.02  # a stretch would give 0.84


# -- memory options, recipes, hints --------------------------------------------------------------


def test_vae_tiling_changed_by_a_shot_takes_effect(files, pipes):
    backend = make(pipes, "wan", width=64, height=64, num_frames=5, vae_tiling=False)
    backend.generate(plan(files, num_frames=5))
    assert backend.pipeline.vae.use_tiling is False
    backend.generate(plan(files, num_frames=5, backend_options={"vae_tiling": True}))
    assert backend.pipeline.vae.use_tiling is True
    with pytest.raises(BackendError, match="vae_tiling is not available for AutoencoderKLTemporalDecoder"):
        make(pipes, "svd", width=64, height=64, vae_tiling=True).generate(plan(files, "svd", num_frames=3))


def test_group_offload_gives_the_same_clip(files):
    pipe = tp.wan_vace()
    backend = backend_class("wan-vace")({"steps": 2, "timing": "plan", "max_sequence_length": 16, "width": 64,
                                         "height": 64, "reference_images": 0}, pipeline=pipe)
    p = plan(files, "wan-vace", num_frames=5)
    before = np.stack(list(backend.generate(p).frames))
    D.apply_group_offload(pipe, "cpu")  # the same hooks as on a GPU, onload device cpu
    from diffusers.hooks import HookRegistry

    assert HookRegistry.check_if_exists_or_initialize(pipe.transformer).get_hook("group_offloading") is not None
    after = np.stack(list(backend.generate(p).frames))
    assert np.abs(before.astype(int) - after.astype(int)).max() <= 1


def test_svd_loads_fp16_with_the_fp16_variant(monkeypatch):
    from diffusers import StableVideoDiffusionPipeline

    seen = {}

    def fake_from_pretrained(model, **kw):
        seen.update(kw, model=model)
        raise OSError("not found")

    monkeypatch.setattr(StableVideoDiffusionPipeline, "from_pretrained", staticmethod(fake_from_pretrained))
    monkeypatch.setattr(D, "resolve_device", lambda name: "cuda")
    svd = backend_class("svd")()
    with pytest.raises(BackendError, match=r"hf download stabilityai/stable-video-diffusion-img2vid-xt --include .*fp16"):
        _ = svd.pipeline
    assert seen["variant"] == "fp16" and seen["torch_dtype"] == torch.float16


def test_consisid_face_models_come_from_the_local_snapshot(tmp_path, monkeypatch):
    from storyengine.backends import consisid

    (tmp_path / "face_encoder").mkdir()
    calls = []

    def fake_snapshot(repo_id, local_files_only, allow_patterns):
        calls.append((repo_id, local_files_only))
        return str(tmp_path)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert consisid.face_models_folder(None, "BestWishYsh/ConsisID-preview") == str(tmp_path)
    assert calls == [("BestWishYsh/ConsisID-preview", True)]

    def missing(**kw):
        raise OSError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **kw: missing())
    with pytest.raises(BackendError, match=r"hf download BestWishYsh/ConsisID-preview --include 'face_encoder/\*'"):
        consisid.face_models_folder(None, "BestWishYsh/ConsisID-preview")


def test_consisid_passes_the_aligned_face_crop_and_refuses_a_still_without_face(files, pipes):
    crop = Image.new("RGB", (32, 32), (250, 10, 10))

    def embedder(image):
        id_cond, id_vit = tp.fake_face_embedder(image)
        return id_cond, id_vit, crop, None

    pipe = pipe_of(pipes, "consisid")
    backend = ConsisIDBackend({"steps": 2, "max_sequence_length": 16, "timing": "plan"}, pipeline=pipe, face_embedder=embedder)
    kwargs, cond = backend.prepare_inputs(plan(files, "consisid"))
    assert cond == ["still", "face_embedding"]
    red = np.asarray(kwargs["image"])
    assert red.shape[:2] == (64, 64) and (red[..., 0] > 200).all() and (red[..., 1] < 50).all()

    def no_face(image):
        raise RuntimeError("facexlib align face fail")

    backend = ConsisIDBackend({"steps": 2, "max_sequence_length": 16, "timing": "plan"}, pipeline=pipe, face_embedder=no_face)
    with pytest.raises(BackendError, match=r"no face found in '.*photo.png' \(shot 'a'\)"):
        backend.prepare_inputs(plan(files, "consisid"))


# -- ArcFace on the GPU install path -------------------------------------------------------------


def test_conformance_arcface_prefers_cuda_and_says_which_provider_runs(tmp_path, monkeypatch):
    pytest.importorskip("insightface")
    import onnxruntime

    from storyengine.encoders import insightface_face
    from tiny_onnx import make_pack

    make_pack(tmp_path)
    assert insightface_face.default_providers()[-1] == "CPUExecutionProvider"
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert insightface_face.default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    enc = insightface_face.ArcFaceEncoder(root=tmp_path, det_size=(320, 320))
    # this machine's onnxruntime has no CUDA: the session falls back, and the encoder says so
    assert enc.provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert enc.recogniser.session.get_providers()[0] == enc.provider


def test_vram_bench_gpu_skips_cleanly_without_cuda():
    import os
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: run scripts/bench_gpu.py itself")
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, str(root / "scripts" / "bench_gpu.py")], capture_output=True, text=True,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert res.returncode == 0 and "no CUDA device here; skipped" in res.stdout
