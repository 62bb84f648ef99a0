"""The six diffusers back-ends on tiny random pipelines: interface, determinism, rules, loading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

import tiny_pipelines as tp
from storyengine.backends._diffusers import DiffusersBackend
from storyengine.backends.base import Clip, VideoBackend
from storyengine.backends.consisid import ConsisIDBackend
from storyengine.backends.wan import WanBackend
from storyengine.backends.wan_vace import grabcut_mask, on_white
from storyengine.errors import BackendError
from storyengine.plugins import backend_class
from storyengine.specs import CharacterRef, ShotPlan

IDS = list(tp.BUILDERS)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("shots")
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((60, 80, 3)) * 255).astype("uint8")).save(d / "still.png")
    for name, colour in [("mara-1.png", (30, 90, 200)), ("mara-2.png", (200, 40, 40)), ("teo-1.png", (20, 160, 60))]:
        im = Image.new("RGB", (48, 64), (90, 140, 90))  # a subject on a green wall
        im.paste(Image.new("RGB", (20, 36), colour), (14, 14))
        im.save(d / name)
    return d


@pytest.fixture(scope="module")
def pipelines():
    return {}


def make(bid, pipelines, **options):
    """A back-end of ``bid`` around a (cached) tiny pipeline."""
    if bid not in pipelines:
        pipelines[bid] = tp.BUILDERS[bid]()
    # timing: plan (generate the plan's frames) keeps these tests on the plan's counts; native
    # timing has its own tests. Wan I2V keeps its 512 text tokens (image tokens need them).
    opts = {"steps": 2, "timing": "plan", **options}
    if bid not in ("svd", "wan"):
        opts.setdefault("max_sequence_length", 16)
    extra = {"face_embedder": tp.fake_face_embedder} if bid == "consisid" else {}
    return backend_class(bid)(opts, pipeline=pipelines[bid], **extra)


def plan(files, bid="wan", *, seed=1, width=48, height=32, num_frames=17, photos=("mara-1.png",), **kw) -> ShotPlan:
    mara = CharacterRef(handle="mara", name="Mara", kind="person", photos=[str(files / p) for p in photos])
    return ShotPlan(
        series="s", episode_id="e1", shot_id="a", index=0, still=str(files / "still.png"),
        characters=kw.pop("characters", [mara]), prompt="mara looks up", seed=seed, fps=8, width=width,
        height=height, num_frames=num_frames, duration=num_frames / 8, min_frames=9, backend=bid, **kw,
    )


def frames(clip: Clip) -> np.ndarray:
    return np.stack(list(clip.frames))


def latents(backend, p):
    kwargs, conditioning = backend.prepare_inputs(p)
    kwargs["output_type"] = "latent"
    return backend.pipeline(**kwargs).frames, conditioning


@pytest.mark.parametrize("bid", IDS)
def test_backend_produces_planned_clip(files, pipelines, bid):
    backend = make(bid, pipelines, width=64, height=64)
    assert isinstance(backend, VideoBackend) and backend.backend_id == bid
    seen = []
    clip = backend.generate(plan(files, bid), progress=lambda done, total: seen.append((done, total)))
    assert (clip.num_frames, clip.width, clip.height, clip.fps) == (17, 48, 32, 8)
    video = frames(clip)
    assert video.shape == (17, 32, 48, 3) and video.dtype == np.uint8
    assert seen[-1] == (17, 17) and len(seen) == 17
    assert clip.meta["conditioning"][0] == "still" and clip.meta["generated_frames"] == 17
    assert clip.meta["generated_size"] == [64, 64]


@pytest.mark.parametrize("bid", IDS)
def test_same_seed_same_frames_other_seed_other_frames(files, pipelines, bid):
    backend = make(bid, pipelines, width=64, height=64)
    a = frames(backend.generate(plan(files, bid, seed=5, num_frames=9)))  # 9 frames: half the time, same point
    b = frames(backend.generate(plan(files, bid, seed=5, num_frames=9)))
    c = frames(backend.generate(plan(files, bid, seed=6, num_frames=9)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("bid,bad,step", [("wan", 16, 4), ("wan-vace", 20, 4), ("ltx", 15, 4), ("cogvideox", 18, 4), ("consisid", 12, 4)])
def test_frame_rule_violation_names_the_value(files, pipelines, bid, bad, step):
    backend = make(bid, pipelines, width=64, height=64)
    with pytest.raises(BackendError, match=rf"{bid}: the plan's num_frames must be {step}k\+1 .* but is {bad}$"):
        backend.generate(plan(files, bid, num_frames=bad))
    with pytest.raises(BackendError, match=rf"num_frames option must be .* but is {bad}"):
        make(bid, pipelines, width=64, height=64, num_frames=bad).generate(plan(files, bid))


@pytest.mark.parametrize("bid,width,multiple", [("wan", 72, 16), ("ltx", 48, 32), ("svd", 60, 8)])
def test_size_rule_violation_names_the_value(files, pipelines, bid, width, multiple):
    backend = make(bid, pipelines, width=width, height=64)
    with pytest.raises(BackendError, match=rf"divisible by {multiple} but are {width} and 64"):
        backend.generate(plan(files, bid))


def test_default_size_is_the_plans_rounded_and_output_is_resized(files, pipelines):
    clip = make("wan", pipelines).generate(plan(files, width=70, height=40))
    assert clip.meta["generated_size"] == [64, 48]
    assert frames(clip).shape == (17, 40, 70, 3)


def test_generated_frame_count_is_retimed_to_the_plan(files, pipelines):
    clip = make("wan", pipelines, width=64, height=64, num_frames=9).generate(plan(files, num_frames=12))
    assert clip.meta["generated_frames"] == 9 and frames(clip).shape[0] == 12


def test_valid_num_frames_helper(pipelines):
    wan = make("wan", pipelines)
    assert [wan.valid_num_frames(n) for n in (17, 18, 96, 81)] == [17, 21, 97, 81]
    assert make("svd", pipelines).valid_num_frames(14) == 14


def test_options_refuse_unknown_keys_and_fixed_options_per_shot(files, pipelines):
    with pytest.raises(ValidationError):
        WanBackend({"stepz": 3})
    backend = WanBackend({"model": "x/y"})
    backend._pipeline, backend._loaded_with = tp.BUILDERS["wan"](), backend.options
    with pytest.raises(BackendError, match=r"'model' is fixed .*'x/y'.*'a/b'"):
        backend.generate(plan(files, backend_options={"model": "a/b"}))


def test_cogvideox_learned_positions_render_the_trained_size(files, pipelines):
    backend = make("cogvideox", pipelines)
    assert backend.generate(plan(files, "cogvideox", width=96, height=54)).meta["generated_size"] == [64, 64]
    with pytest.raises(BackendError, match="only renders 64x64 .* are 96x64"):
        make("cogvideox", pipelines, width=96, height=64).generate(plan(files, "cogvideox"))


def test_vace_reference_images_on_white(files, pipelines):
    photo = Image.open(files / "mara-1.png")
    ref = np.asarray(on_white(photo, grabcut_mask(photo)))
    assert (ref[0, 0] == 255).all() and (ref[-1, -1] == 255).all()  # the green wall is gone
    assert (np.abs(ref.astype(int) - (30, 90, 200)).sum(-1) < 30).mean() > 0.3  # the subject stays
    teo = CharacterRef(handle="teo", name="Teo", kind="pet", photos=[str(files / "teo-1.png")])
    mara = CharacterRef(handle="mara", name="Mara", kind="person", photos=[str(files / "mara-1.png"), str(files / "mara-2.png")])
    backend = make("wan-vace", pipelines, width=64, height=64)
    with_refs, cond = latents(backend, plan(files, "wan-vace", characters=[mara, teo]))
    assert cond == ["still", "reference_images:3"]
    two = backend.reference_images(plan(files, "wan-vace", characters=[mara, teo]), backend.options.model_copy(update={"reference_images": 2}))
    assert len(two) == 2
    none = make("wan-vace", pipelines, width=64, height=64, reference_images=0)
    without, cond = latents(none, plan(files, "wan-vace", characters=[mara, teo]))
    assert cond == ["still"]
    # the latents carry the references in front (dropped before decoding); compare the clip's frames
    assert with_refs.shape[2] == without.shape[2] + 3
    assert (with_refs[:, :, 3:] - without).abs().max() > 1e-4


def test_consisid_face_embedding_conditions_the_clip(files, pipelines):
    backend = make("consisid", pipelines, width=64, height=64)
    a, cond = latents(backend, plan(files, "consisid", photos=("mara-1.png",)))
    b, _ = latents(backend, plan(files, "consisid", photos=("mara-2.png",)))
    assert cond == ["still", "face_embedding"]
    assert (a - b).abs().max() > 1e-5
    plain = make("consisid", pipelines, width=64, height=64, identity="none")
    with pytest.raises(BackendError, match="needs one"):
        plain.generate(plan(files, "consisid"))
    two = [CharacterRef(handle=h, name=h, kind="person") for h in ("mara", "teo")]
    with pytest.raises(BackendError, match="at most 1 character"):
        backend.generate(plan(files, "consisid", characters=two))


def test_consisid_without_face_models_says_what_is_missing(files, pipelines, tmp_path):
    backend = ConsisIDBackend({"steps": 2, "max_sequence_length": 16, "width": 64, "height": 64, "face_models": str(tmp_path)},
                              pipeline=pipelines.get("consisid") or tp.consisid())
    with pytest.raises(BackendError, match=r"consisid: (the face models need .*pip install|no face_encoder folder)"):
        backend.generate(plan(files, "consisid"))


@pytest.mark.parametrize("bid", ["wan", "ltx"])
def test_saved_pipeline_reloads_offline_through_the_backend(files, pipelines, bid, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny = tp.BUILDERS[bid]()
    tiny.save_pretrained(tmp_path / "model")
    direct = make(bid, {bid: tiny}, width=64, height=64)
    opts = {"model": str(tmp_path / "model"), "steps": 2, "width": 64, "height": 64, "timing": "plan", "offload": "none"}
    backend = backend_class(bid)({**opts, **({} if bid == "wan" else {"max_sequence_length": 16})})
    assert backend._pipeline is None  # nothing loads until the first shot
    loaded = frames(backend.generate(plan(files, bid)))
    assert type(backend.pipeline) is type(tiny)
    np.testing.assert_allclose(loaded.astype(int), frames(direct.generate(plan(files, bid))).astype(int), atol=1)


@pytest.mark.parametrize("model", ["acme/no-such-video-model", "/nowhere/models/wan"])
def test_missing_model_gives_a_one_line_hint(files, model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError) as err:
        WanBackend({"model": model}).generate(plan(files))
    message = str(err.value)
    assert "\n" not in message and model in message
    # current huggingface_hub's CLI is `hf`; pull only what the pipeline needs
    assert (f"hf download {model} --include 'model_index.json' '*/*'" in message) or ("save_pretrained" in message)


def test_all_diffusers_backends_are_registered():
    for bid in IDS:
        cls = backend_class(bid)
        assert issubclass(cls, DiffusersBackend) and cls.backend_id == bid
        assert cls.Options.model_config.get("extra") == "forbid"
    assert backend_class("svd").supports_lora is False and backend_class("wan-vace").supports_reference_images


@pytest.mark.parametrize("bid", IDS)
def test_planned_conditioning_is_what_the_backend_reports(files, pipelines, bid):
    backend = make(bid, pipelines, width=64, height=64)
    p = plan(files, bid, photos=("mara-1.png", "mara-2.png"))
    _, conditioning = backend.prepare_inputs(p)
    assert type(backend).planned_conditioning(p.characters, backend.options_for(p)) == conditioning


@pytest.mark.parametrize("bid,options,asked,planned", [
    ("wan", {}, 48, 49), ("wan", {}, 49, 49), ("ltx", {}, 48, 49), ("ltx", {}, 50, 57), ("cogvideox", {}, 32, 33),
    ("cogvideox", {"model": "THUDM/CogVideoX1.5-5B-I2V"}, 48, 49), ("cogvideox", {"model": "THUDM/CogVideoX1.5-5B-I2V"}, 50, 57),
    ("svd", {}, 48, 48), ("motion", {}, 48, 48), ("wan", {"num_frames": 33}, 48, 48),
])
def test_planner_frame_rule_snaps_up_before_anything_loads(bid, options, asked, planned):
    cls = backend_class(bid)
    assert cls.planned_num_frames(asked, cls.Options(**options)) == planned
