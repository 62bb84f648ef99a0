"""Character management: identity stats kept current, rename/remove, adapters, export/import, re-embedding, CLI."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
from conftest import save
from safetensors.numpy import save_file
from typer.testing import CliRunner

from storyengine import plugins
from storyengine.characters import (
    add_adapter,
    add_photos,
    export_character,
    import_character,
    reembed,
    remove_adapter,
    remove_character,
    remove_photo,
    rename_character,
)
from storyengine.cli import app
from storyengine.errors import RegistryError, UnsafePathError
from storyengine.register import register_character
from storyengine.settings import Settings


@pytest.fixture
def mara(reg, ws, person_photos):
    register_character(reg, ws, "mara", person_photos, kind="person", name="Mara", consent="self, 2026-11-01",
                       licence="CC0")
    return "mara"


def lora_file(path, rank=4, extra=None):
    t = {"transformer.blocks.0.attn1.to_q.lora_A.weight": np.zeros((rank, 32), np.float32),
         "transformer.blocks.0.attn1.to_q.lora_B.weight": np.ones((32, rank), np.float32)}
    save_file(extra or t, str(path))
    return path


# ---------------------------------------------------------------- identity statistics stay current
def test_add_photos_and_remove_photo_recompute_identity(reg, ws, mara, tmp_path, astronaut):
    assert reg.identity("mara")[0]["n"] == 3
    more = save(tmp_path / "p4.png", np.clip(astronaut[20:, 10:390].astype(int) + 25, 0, 255).astype(np.uint8))
    r = add_photos(reg, ws, "mara", [more], consent="second shoot")
    assert r.accepted and reg.identity("mara")[0]["n"] == 4
    assert reg.photos("mara")[-1]["consent"] == "second shoot"
    first = reg.photos("mara")[0]
    remove_photo(reg, ws, "mara", first["id"])
    assert reg.identity("mara")[0]["n"] == 3 and not (ws.root / first["path"]).exists()
    assert reg.db["embeddings"].count_where("photo_id = ?", [first["id"]]) == 0
    with pytest.raises(RegistryError, match=r"character 'mara' has no photo 999 \(its photos: "):
        remove_photo(reg, ws, "mara", 999)


# ---------------------------------------------------------------- rename / remove
def test_rename_moves_rows_paths_and_folder(reg, ws, mara, tmp_path):
    add_adapter(reg, ws, "mara", lora_file(tmp_path / "mara_lora.safetensors"), base="wan-1.3b", trigger="sks")
    rename_character(reg, ws, "mara", "mara-b")
    assert not reg.has_character("mara") and reg.character("mara-b")["consent"] == "self, 2026-11-01"
    for t in ("photos", "embeddings", "adapters", "identity"):
        assert reg.db[t].count_where("handle = 'mara'") == 0 and reg.db[t].count_where("handle = 'mara-b'") > 0, t
    for p in reg.photos("mara-b") + reg.adapters("mara-b"):
        assert p["path"].startswith("characters/mara-b/") and (ws.root / p["path"]).is_file()
    assert not (ws.characters / "mara").exists()
    with pytest.raises(UnsafePathError):
        rename_character(reg, ws, "mara-b", "../x")
    register_character(reg, ws, "other", [save(tmp_path / "cat.png", np.asarray(__import__("skimage").data.chelsea()))], kind="pet")
    with pytest.raises(RegistryError, match=r"cannot rename 'mara-b' to 'other': 'other' is already registered"):
        rename_character(reg, ws, "mara-b", "other")


def test_remove_deletes_rows_and_files(reg, ws, mara):
    counts = remove_character(reg, ws, "mara")
    assert counts["photos"] == 3 and counts["embeddings"] == 3 and counts["identity"] == 1
    assert reg.characters() == [] and not (ws.characters / "mara").exists()
    assert not list(ws.characters.glob(".removed-*"))


# ---------------------------------------------------------------- adapters
def test_adapter_add_stores_sha_base_trigger_rank(reg, ws, mara, tmp_path):
    src = lora_file(tmp_path / "Mara LoRA.safetensors", rank=8)
    row = add_adapter(reg, ws, "mara", src, base="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", trigger="sks", weight=0.8, steps=500)
    import hashlib

    assert row["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert row["path"] == "characters/mara/adapters/mara-lora.safetensors" and (ws.root / row["path"]).is_file()
    assert (row["rank"], row["steps"], row["weight"], row["trigger"]) == (8, 500, 0.8, "sks")
    assert reg.adapters("mara")[0]["base"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    with pytest.raises(RegistryError, match="already registered for 'mara'"):
        add_adapter(reg, ws, "mara", src, base="x", trigger="sks")
    remove_adapter(reg, ws, "mara", "mara-lora")
    assert reg.adapters("mara") == [] and not (ws.root / row["path"]).exists()


def test_adapter_refusals_name_file_and_reason(reg, ws, mara, tmp_path):
    import torch

    bin_ = tmp_path / "lora.bin"
    bin_.write_bytes(b"whatever")
    pkl = tmp_path / "pickled.safetensors"
    pkl.write_bytes(pickle.dumps({"lora_A": [1, 2, 3]}, protocol=4))
    tsave = tmp_path / "tsave.safetensors"
    torch.save({"lora_A": torch.zeros(2)}, tsave)
    nolora = lora_file(tmp_path / "full.safetensors", extra={"unet.conv.weight": np.zeros((3, 3), np.float32)})
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(lora_file(tmp_path / "ok.safetensors").read_bytes()[:-64])
    cases = {
        bin_: f"{bin_}: refused: .bin files are Python pickles, which can run code when loaded; convert the adapter to .safetensors",
        pkl: f"{pkl}: refused: it is a Python pickle; pickles can run code when loaded.",
        tsave: f"{tsave}: refused: it is a zip archive (torch.save format, pickled inside)",
        nolora: f"{nolora}: no LoRA tensors: none of its 1 tensor names contains lora_A/lora_B/lora_down/lora_up (first: unet.conv.weight)",
        trunc: f"{trunc}: corrupt safetensors file: tensor ",
    }
    for path, msg in cases.items():
        with pytest.raises(RegistryError) as e:
            add_adapter(reg, ws, "mara", path, base="wan", trigger="sks")
        assert str(e.value).startswith(msg), str(e.value)
    with pytest.raises(RegistryError, match=r"--trigger must be one word, got 'two words'"):
        add_adapter(reg, ws, "mara", tmp_path / "ok.safetensors", base="wan", trigger="two words")
    assert reg.adapters("mara") == [] and not (ws.characters / "mara" / "adapters").exists()


# ---------------------------------------------------------------- export / import
def test_export_import_round_trip_and_clash(reg, ws, mara, tmp_path):
    add_adapter(reg, ws, "mara", lora_file(tmp_path / "l.safetensors"), base="wan", trigger="sks", weight=0.7)
    out = tmp_path / "mara.zip"
    m = export_character(reg, ws, "mara", out)
    assert m["character"]["consent"] == "self, 2026-11-01" and len(m["vectors"]) == 3
    with pytest.raises(RegistryError, match=r"character 'mara' is already registered; import it under another handle with --as NEW"):
        import_character(reg, ws, out)
    assert import_character(reg, ws, out, as_handle="mara2") == "mara2"
    a = {v.photo_id: v.vector for v in reg.vectors("mara")}
    b = [v.vector for v in reg.vectors("mara2")]
    np.testing.assert_array_equal(np.stack(list(a.values())), np.stack(b))
    i1, i2 = reg.identity("mara")[0], reg.identity("mara2")[0]
    assert (i1["n"], i1["bound"], i1["encoder_version"]) == (i2["n"], i2["bound"], i2["encoder_version"])
    assert reg.adapters("mara2")[0]["weight"] == 0.7 and reg.photos("mara2")[0]["licence"] == "CC0"
    for p in reg.photos("mara2") + reg.adapters("mara2"):
        assert (ws.root / p["path"]).is_file()


def _rezip(src, dst, edit):
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as w:
        for i in z.infolist():
            name, data = edit(i.filename, z.read(i.filename))
            if name:
                w.writestr(name, data)
    return dst


def test_import_validates_before_writing(reg, ws, mara, tmp_path):
    out = tmp_path / "mara.zip"
    export_character(reg, ws, "mara", out)
    photo = next(n for n in zipfile.ZipFile(out).namelist() if n.startswith("photos/"))
    tampered = _rezip(out, tmp_path / "t.zip", lambda n, d: (n, d[:-10] + b"0123456789" if n == photo else d))
    escape = _rezip(out, tmp_path / "e.zip", lambda n, d: ("../../evil.png" if n == photo else n, d))
    bad_vec = _rezip(out, tmp_path / "v.zip", lambda n, d: (n, d.replace(b'"dim": 128', b'"dim": 64', 1) if n == "character.json" else d))
    cases = {tampered: f"{tampered}: refused import: {photo}: sha256 ",
             escape: f"{escape}: refused import: unexpected member '../../evil.png'",
             bad_vec: f"{bad_vec}: refused import: vector 0 (dlib-face): 128 values for dim 64"}
    for z, msg in cases.items():
        with pytest.raises(RegistryError) as e:
            import_character(reg, ws, z, as_handle="copy")
        assert str(e.value).startswith(msg), str(e.value)
    assert not reg.has_character("copy") and not (ws.characters / "copy").exists()
    assert not list(ws.characters.glob(".import-*"))


# ---------------------------------------------------------------- encoder identity: weights are part of the version
TINY = "storyengine-tiny-clip-reg"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    d = tmp_path_factory.mktemp("clip")
    (d / f"{TINY}.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(d)
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY, pretrained=None)
        f = d / f"tiny{seed}.safetensors"
        save_torch({k: v.contiguous() for k, v in model.state_dict().items()}, str(f))
        files.append(f)
    return files


def test_get_encoder_is_cached_per_configuration(tiny_weights):
    from storyengine.encoders.base import file_digest

    s0 = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights[0]))
    s1 = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights[1]))
    e0, e1 = plugins.get_encoder("clip", s0), plugins.get_encoder("clip", s1)
    assert e0 is plugins.get_encoder("clip", s0) and e0 is not e1
    assert e0.version == f"1+{TINY}/sha256:{file_digest(tiny_weights[0])}" and e0.version != e1.version
    assert plugins.get_encoder("dlib-face", Settings()) is plugins.get_encoder("dlib-face", Settings())


def test_reembed_adds_vectors_per_weights_and_never_mixes_them(reg, ws, tmp_path, cat, tiny_weights):
    p1 = save(tmp_path / "cat.png", cat)
    p2 = save(tmp_path / "cat_flip.png", cat[:, ::-1].copy())
    register_character(reg, ws, "chelsea", [p1, p2], kind="pet")
    assert [s["encoder"] for s in reg.identity("chelsea")] == ["appearance"]
    s0 = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights[0]))
    s1 = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights[1]))
    r0 = reembed(reg, ws, "chelsea", "clip", s0)
    r1 = reembed(reg, ws, "chelsea", "clip", s1)
    assert r0["embedded"] == r1["embedded"] == 2 and r0["version"] != r1["version"]
    ident = {(s["encoder"], s["encoder_version"]): s for s in reg.identity("chelsea")}
    assert set(ident) == {("appearance", "2"), ("clip", r0["version"]), ("clip", r1["version"])}
    assert ident[("clip", r0["version"])]["n"] == 2 and ident[("clip", r0["version"])]["dim"] == 16
    v0 = reg.vectors("chelsea", "clip", r0["version"])
    assert len(v0) == 2 and {v.encoder_version for v in v0} == {r0["version"]}
    enc = plugins.get_encoder("clip", s0)
    np.testing.assert_allclose(v0[0].vector, enc.embed_region(cat, (0, 0, cat.shape[1], cat.shape[0])), atol=1e-5)
    reembed(reg, ws, "chelsea", "clip", s0)  # again: replaced, not duplicated
    assert len(reg.vectors("chelsea", "clip", r0["version"])) == 2


def test_register_pet_with_clip_settings(reg, ws, tmp_path, cat, tiny_weights):
    s = Settings(other_encoders=("clip",), clip_model=TINY, clip_pretrained=str(tiny_weights[0]))
    register_character(reg, ws, "chelsea", [save(tmp_path / "cat.png", cat)], kind="pet", settings=s)
    (row,) = reg.db["embeddings"].rows
    assert row["encoder_version"] == plugins.get_encoder("clip", s).version and row["dim"] == 16



def test_checker_references_use_the_workspace_storyengine_toml(reg, ws, tmp_path, cat, tiny_weights, monkeypatch):
    """Weights named in storyengine.toml reach the render-time references (they once fell back to env-only
    settings, so a character registered under them had "no vectors for any installed encoder")."""
    from dataclasses import replace

    from storyengine.consistency import references_for
    from storyengine.encoders.base import file_digest

    for var in ("STORYENGINE_CLIP_MODEL", "STORYENGINE_CLIP_PRETRAINED"):
        monkeypatch.delenv(var, raising=False)
    toml = ws.root / "storyengine.toml"
    toml.write_text(f'[storyengine]\nclip_model = "{TINY}"\nclip_pretrained = "{tiny_weights[0]}"\n')
    s = replace(Settings.load(ws.root), other_encoders=("clip",))
    register_character(reg, ws, "chelsea", [save(tmp_path / "cat.png", cat)], kind="pet", settings=s)
    v0 = f"1+{TINY}/sha256:{file_digest(tiny_weights[0])}"
    (ref,) = references_for(reg, "chelsea")
    assert (ref.encoder.name, ref.encoder.version, ref.vectors.shape) == ("clip", v0, (1, 16))
    # the workspace now names other weights: the error says which version the vectors have and which is configured
    toml.write_text(f'[storyengine]\nclip_model = "{TINY}"\nclip_pretrained = "{tiny_weights[1]}"\n')
    v1 = f"1+{TINY}/sha256:{file_digest(tiny_weights[1])}"
    with pytest.raises(RegistryError) as e:
        references_for(reg, "chelsea")
    assert str(e.value) == (f"character 'chelsea' has no vectors for any installed encoder: "
                            f"clip {v0}: the configured clip is version {v1}")
    # explicit settings win over the workspace's
    (ref,) = references_for(reg, "chelsea", settings=s)
    assert ref.encoder.version == v0

# ---------------------------------------------------------------- CLI
def test_cli_character_commands(ws, tmp_path, person_photos, astronaut, hopper):
    run = CliRunner().invoke
    w = ["-w", str(ws.root)]
    r = run(app, ["character", "add", "mara", *map(str, person_photos), "--consent", "self", *w])
    assert r.exit_code == 0, r.output
    assert "registered 3 photo(s) of mara (0 refused)" in r.output
    r = run(app, ["character", "show", "mara", "--json", *w])
    data = json.loads(r.stdout)
    assert data["identity"][0]["n"] == 3 and data["identity"][0]["bound"] == pytest.approx(0.91)
    r = run(app, ["character", "show", "mara", *w])
    assert "pairwise" in r.output and "dlib-face" in r.output and "consent: self" in r.output
    both = np.zeros((300, 680, 3), np.uint8) + 90
    both[:300, :400] = astronaut
    from PIL import Image

    both[:281, 420:660] = np.asarray(Image.fromarray(hopper).resize((240, 281)))
    p = save(tmp_path / "both.png", both)
    r = run(app, ["character", "show", "mara", "--candidates", str(p), "--json", *w])
    cands = json.loads(r.stdout)
    assert [c["index"] for c in cands] == [0, 1] and cands[0]["box"][0] < 400 < cands[1]["box"][0]
    r = run(app, ["character", "add-photos", "mara", str(save(tmp_path / "h.png", hopper)), *w])
    assert r.exit_code == 1 and "h.png: looks like a different person: distance" in r.output
    r = run(app, ["character", "remove", "mara", *w])
    assert r.exit_code == 1 and "pass --yes to confirm" in r.output
    r = run(app, ["character", "rename", "mara", "maya", "--json", *w])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"old": "mara", "new": "maya"}
    z = tmp_path / "maya.zip"
    r = run(app, ["character", "export", "maya", str(z), "--json", *w])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"handle": "maya", "zip": str(z), "photos": 3, "vectors": 3,
                                                         "adapters": 0}, r.stdout
    r = run(app, ["character", "import", str(z), *w])
    assert r.exit_code == 1 and "--as NEW" in r.output
    r = run(app, ["character", "import", str(z), "--as", "maya2", "--json", *w])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"handle": "maya2", "photos": 3}
    lora = lora_file(tmp_path / "maya.safetensors")
    r = run(app, ["character", "adapter", "add", "maya", str(lora), "--base", "wan", "--trigger", "sks", "--weight", "0.8", *w])
    assert r.exit_code == 0 and "rank 4" in r.output, r.output
    r = run(app, ["character", "list", "--json", *w])
    rows = {c["handle"]: c for c in json.loads(r.stdout)}
    assert set(rows) == {"maya", "maya2"} and rows["maya"]["adapters"] == 1 and rows["maya2"]["photos"] == 3
    r = run(app, ["character", "remove", "maya2", "--yes", "--json", *w])
    assert r.exit_code == 0 and json.loads(r.stdout)["handle"] == "maya2" and json.loads(r.stdout)["removed"]
    assert not (ws.characters / "maya2").exists()
