"""Character LoRA: training on a tiny Wan (and LTX) transformer, loading, verification, refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import tiny_pipelines as tp
from storyengine.backends._diffusers import check_adapter_file, prompt_with_triggers, sha256_file
from storyengine.backends.ltx import LTXBackend
from storyengine.backends.wan import WanBackend
from storyengine.errors import BackendError
from storyengine.lora import train_lora
from storyengine.specs import CharacterRef, ShotPlan

STEPS = 30
# Wan 2.1 I2V keeps its 512 text tokens (diffusers finds the image tokens by that count).
SETTINGS = dict(family="wan", trigger="mara", rank=4, lr=5e-3, resolution=64, seed=0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(d / "photo.png")
    Image.new("RGB", (80, 60), (200, 100, 50)).save(d / "still.png")
    return d


@pytest.fixture(scope="module")
def trained(files):
    pipe = tp.wan_i2v()
    meta = train_lora(
        pipe, [files / "photo.png"], out_path=files / "mara.safetensors", steps=STEPS,
        checkpoint_dir=files / "ck-a", checkpoint_every=10, **SETTINGS,
    )
    return pipe, meta


@pytest.fixture(scope="module")
def backend():
    return WanBackend({"steps": 2, "timing": "plan"}, pipeline=tp.wan_i2v())


def plan(files, adapters=(), *, seed=1, prompt="mara walks", characters=None) -> ShotPlan:
    chars = characters if characters is not None else [
        CharacterRef(handle="mara", name="Mara", kind="person", photos=[str(files / "photo.png")], adapters=list(adapters))
    ]
    return ShotPlan(
        series="s", episode_id="e1", shot_id="a", index=0, still=str(files / "still.png"), characters=chars,
        prompt=prompt, seed=seed, fps=8, width=64, height=64, num_frames=17, duration=2.125, min_frames=9, backend="wan",
    )


def adapter(meta, weight=1.0, **kw):
    return {"path": meta["path"], "weight": weight, "trigger": meta["trigger"], "base": meta["base"], "sha256": meta["sha256"], **kw}


def latents(backend, p):
    kwargs, conditioning = backend.prepare_inputs(p)
    kwargs["output_type"] = "latent"
    return backend.pipeline(**kwargs).frames, conditioning


def test_training_lowers_loss_and_saves(trained, files):
    _, meta = trained
    assert meta["final_loss"] < meta["initial_loss"]
    assert len(meta["losses"]) == STEPS and meta["steps"] == STEPS
    assert meta["sha256"] == sha256_file(files / "mara.safetensors")
    assert (meta["family"], meta["base"], meta["rank"], meta["trigger"]) == ("wan", "wan", 4, "mara")
    keys = list(load_file(files / "mara.safetensors"))
    assert keys and all(k.startswith("transformer.") and ".lora_" in k for k in keys)
    assert sorted(p.name for p in (files / "ck-a").iterdir()) == ["step-000010", "step-000020", "step-000030"]


def test_training_leaves_the_pipeline_clean(trained):
    pipe, _ = trained
    assert not any("lora" in n for n, _ in pipe.transformer.named_parameters())


def test_resume_ends_where_an_uninterrupted_run_does(trained, files):
    pipe, full = trained
    common = dict(out_path=files / "resumed.safetensors", checkpoint_dir=files / "ck-b", checkpoint_every=10, **SETTINGS)
    train_lora(pipe, [files / "photo.png"], steps=20, **common)
    meta = train_lora(pipe, [files / "photo.png"], steps=STEPS, **common)
    assert meta["resumed_from"] == 20
    np.testing.assert_allclose(meta["losses"], full["losses"], rtol=1e-5)


def test_checkpoint_from_other_settings_is_refused(trained, files):
    pipe, _ = trained
    with pytest.raises(BackendError, match=r"rank: 4 there, 8 now"):
        train_lora(pipe, [files / "photo.png"], out_path=files / "x.safetensors", steps=STEPS,
                   checkpoint_dir=files / "ck-a", **{**SETTINGS, "rank": 8})


def test_adapter_changes_output_deterministically(trained, files, backend):
    _, meta = trained
    off, cond_off = latents(backend, plan(files))
    on, cond_on = latents(backend, plan(files, [adapter(meta)]))
    again, _ = latents(backend, plan(files, [adapter(meta)]))
    zero, cond_zero = latents(backend, plan(files, [adapter(meta, weight=0.0)]))
    off_again, _ = latents(backend, plan(files))
    assert cond_off == ["still"] and cond_on == ["still", "lora:mara@1"] and cond_zero == ["still", "lora:mara@0"]
    assert (on - off).abs().max() > 1e-3
    assert torch.equal(on, again)
    assert torch.allclose(zero, off, atol=1e-6)
    assert torch.equal(off_again, off)


def test_two_characters_combine_with_weights(trained, files, backend):
    _, meta = trained
    teo_path = files / "teo.safetensors"
    save_file({k: v * 2.0 if ".lora_B." in k else v for k, v in load_file(meta["path"]).items()}, str(teo_path))
    teo = {"path": str(teo_path), "weight": 0.5, "trigger": "teo", "base": "wan", "sha256": sha256_file(teo_path)}
    chars = [
        CharacterRef(handle="mara", name="Mara", kind="person", adapters=[adapter(meta, weight=0.8)]),
        CharacterRef(handle="teo", name="Teo", kind="person", adapters=[teo]),
    ]
    both, cond = latents(backend, plan(files, characters=chars))
    only_mara, _ = latents(backend, plan(files, [adapter(meta, weight=0.8)]))
    assert cond == ["still", "lora:mara@0.8", "lora:teo@0.5"]
    assert WanBackend.planned_conditioning(chars, backend.options) == cond  # what `storyengine plan` shows
    assert (both - only_mara).abs().max() > 1e-4


def test_adapter_whose_keys_match_nothing_is_refused(trained, files, backend):
    _, meta = trained
    sd = load_file(meta["path"])
    renamed = files / "other-model.safetensors"  # LTX-style names: no module of Wan's is called this
    save_file({k.replace("blocks.", "transformer_blocks.").replace("attn1", "attn9"): v for k, v in sd.items()}, str(renamed))
    with pytest.raises(BackendError, match="other-model.safetensors"):
        latents(backend, plan(files, [adapter(meta, path=str(renamed), sha256="")]))
    unprefixed = files / "no-prefix.safetensors"  # diffusers only warns "No LoRA keys associated …" here
    save_file({k.replace("transformer.", "text_encoder.", 1): v for k, v in sd.items()}, str(unprefixed))
    with pytest.raises(BackendError, match="injected 0 layers"):
        latents(backend, plan(files, [adapter(meta, path=str(unprefixed), sha256="")]))
    assert latents(backend, plan(files))[1] == ["still"]  # nothing half-loaded stays behind


@pytest.mark.parametrize("name", ["mara.bin", "mara.pt", "mara.pkl", "mara.ckpt"])
def test_pickle_adapter_is_refused(files, backend, name):
    path = files / name
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(BackendError, match=r"pickle.*only \.safetensors"):
        latents(backend, plan(files, [{"path": str(path), "weight": 1.0, "trigger": "mara", "base": "wan", "sha256": ""}]))


def test_non_safetensors_content_and_names_are_refused(files):
    fake = files / "fake.safetensors"
    torch.save({"w": torch.zeros(1)}, fake)
    with pytest.raises(BackendError, match="not a safetensors file"):
        check_adapter_file(fake)
    with pytest.raises(BackendError, match="not a .safetensors file"):
        check_adapter_file(files / "mara.onnx")


def test_changed_adapter_file_is_refused(trained, files):
    _, meta = trained
    with pytest.raises(BackendError, match="sha256"):
        check_adapter_file(meta["path"], "0" * 64)


def test_adapter_for_another_family_is_refused(trained, files, backend):
    _, meta = trained
    with pytest.raises(BackendError, match="trained for 'ltx'"):
        latents(backend, plan(files, [adapter(meta, base="ltx")]))
    with pytest.raises(BackendError, match=r"trained for 'THUDM/CogVideoX-5b-I2V' \(cogvideox\)"):
        latents(backend, plan(files, [adapter(meta, base="THUDM/CogVideoX-5b-I2V")]))
    assert latents(backend, plan(files, [adapter(meta, base="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")]))[1][-1] == "lora:mara@1"


@pytest.mark.parametrize("base,family", [
    ("wan", "wan"), ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "wan"), ("Wan-AI/Wan2.1-VACE-1.3B-diffusers", "wan-vace"),
    ("Lightricks/LTX-Video", "ltx"), ("THUDM/CogVideoX1.5-5B-I2V", "cogvideox"), ("BestWishYsh/ConsisID-preview", "consisid"),
    ("stabilityai/stable-video-diffusion-img2vid-xt", "svd"), ("my-org/swanky-model", None), ("", None),
])
def test_adapter_family_from_base(base, family):
    from storyengine.backends._diffusers import adapter_family

    assert adapter_family(base) == family


def test_prompt_with_triggers_adds_only_missing_words(files):
    chars = [
        CharacterRef(handle="mara", name="Mara", kind="person", adapters=[{"path": "a.safetensors", "trigger": "mara"}]),
        CharacterRef(handle="teo", name="Teo", kind="person", adapters=[{"path": "b.safetensors", "trigger": "teo_cat"}]),
    ]
    assert prompt_with_triggers(plan(files, characters=chars, prompt="Mara waves")) == "teo_cat, Mara waves"
    assert prompt_with_triggers(plan(files, characters=chars, prompt="maramba")) == "mara, teo_cat, maramba"
    assert prompt_with_triggers(plan(files, characters=chars, prompt="mara and teo_cat")) == "mara and teo_cat"


def test_ltx_lora_trains_and_loads(files):
    pipe = tp.ltx_i2v()
    meta = train_lora(pipe, [files / "photo.png"], family="ltx", out_path=files / "ltx.safetensors", trigger="mara",
                      rank=4, steps=12, lr=5e-3, resolution=64, max_sequence_length=16)
    assert np.isfinite(meta["final_loss"]) and meta["base"] == "ltx"
    ltx = LTXBackend({"steps": 2, "max_sequence_length": 16, "timing": "plan"}, pipeline=pipe)
    p = plan(files, [adapter(meta)]).model_copy(update={"backend": "ltx"})
    kwargs, cond = ltx.prepare_inputs(p)
    assert cond == ["still", "lora:mara@1"]


def test_unknown_family_and_bad_out_path(files):
    with pytest.raises(BackendError, match="'svd' cannot be trained"):
        train_lora({}, [files / "photo.png"], family="svd", out_path=files / "a.safetensors", trigger="m")
    with pytest.raises(BackendError, match="must end in .safetensors"):
        train_lora({}, [files / "photo.png"], family="wan", out_path=files / "a.bin", trigger="m")


# -- A registered character → train → registry (library and CLI) -------------------------------


@pytest.fixture
def mara(ws, reg, person_photos):
    from storyengine.register import register_character

    register_character(reg, ws, "mara", person_photos, kind="person")
    return "mara"


def test_train_character_checkpoints_resumes_and_saves_into_the_registry(ws, reg, mara):
    from storyengine.lora import train_character

    saved, seen = [], []

    def save(reg_, ws_, handle, path, **kw):
        saved.append((handle, Path(path), kw))
        return {"path": str(path), **kw}

    pipe = tp.wan_i2v()
    common = dict(base="wan", rank=4, lr=5e-3, resolution=64, checkpoint_every=2, pipeline=pipe, save=save)
    first = train_character(reg, ws, "mara", steps=4, progress=lambda s, n, loss: seen.append((s, n)), **common)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and first["resumed_from"] is None
    ck = ws.character_dir("mara") / "training" / "wan-r4" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step-000002", "step-000004"]
    again = train_character(reg, ws, "mara", steps=6, **common)
    assert again["resumed_from"] == 4 and len(again["losses"]) == 6 and again["losses"][:4] == first["losses"]
    handle, path, kw = saved[-1]
    assert handle == "mara" and path.suffix == ".safetensors" and path.is_file()
    assert kw == {"base": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "trigger": "mara", "weight": 1.0, "rank": 4, "steps": 6}
    assert again["adapter"]["trigger"] == "mara"


def test_train_character_refuses_untrainable_bases_and_unknown_handles(ws, reg, mara):
    from storyengine.errors import RegistryError
    from storyengine.lora import train_character

    with pytest.raises(BackendError, match="back-end 'svd' cannot be trained; trainable: wan, wan-vace, ltx"):
        train_character(reg, ws, "mara", base="svd")
    with pytest.raises(RegistryError, match="nobody"):
        train_character(reg, ws, "nobody", base="wan")


def test_cli_train_lora_registers_an_adapter_the_planner_uses(tmp_path, ws, reg, mara):
    pytest.importorskip("storyengine.characters", reason="add_adapter (issue 3) has not landed yet")
    from typer.testing import CliRunner

    from storyengine.cli import app
    from storyengine.planner import character_ref

    tp.wan_i2v().save_pretrained(tmp_path / "tiny-wan")
    Image.new("RGB", (80, 60), (200, 100, 50)).save(tmp_path / "still.png")
    args = ["character", "train-lora", "mara", "--base", "wan", "--model", str(tmp_path / "tiny-wan"), "--rank", "4",
            "--steps", "3", "--lr", "0.005", "--resolution", "64", "--trigger", "mara_person", "-w", str(ws.root)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "mara_person" in res.output and "rank" in res.output
    (row,) = reg.adapters("mara")
    assert (row["base"], row["trigger"], row["rank"], row["steps"]) == (str(tmp_path / "tiny-wan"), "mara_person", 4, 3)
    ref = character_ref(reg, ws, "mara")
    assert ref.adapters[0]["sha256"] == sha256_file(ref.adapters[0]["path"])
    # the registered adapter drives a Wan back-end and is refused by LTX (family read from the folder's pipeline class)
    wan = WanBackend({"steps": 2, "timing": "plan"}, pipeline=tp.wan_i2v())
    assert wan.prepare_inputs(plan(tmp_path, ref.adapters))[1] == ["still", "lora:mara@1"]
    with pytest.raises(BackendError, match=r"trained for .*tiny-wan' \(wan\); it loads into wan, wan-vace only"):
        LTXBackend({"steps": 2}, pipeline=None).planned_conditioning([ref], LTXBackend.Options())
    res = CliRunner().invoke(app, args[:3] + ["--base", "svd", "-w", str(ws.root)])
    assert res.exit_code == 1 and "cannot be trained" in res.output
