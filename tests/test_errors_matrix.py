"""Issue 7, the bad-input matrix (docs/errors.md): one test per row.

Each row feeds one bad input through the CLI (typer's CliRunner, in-process) or the Python function
the CLI calls, asserts the exact user-facing message (``error: …`` on stderr, exit code 1; an
anchored regex only where a pid, a time or a measured distance varies), and asserts that the
registry and the files under ``characters/`` and ``renders/`` are byte-for-byte what they were
before (``snapshot``). Rows are numbered as in docs/errors.md.

No row renders video: the two render rows stop before a frame would be generated.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from conftest import save
from PIL import Image
from safetensors.numpy import save_file
from typer.testing import CliRunner

from storyengine import plugins
from storyengine.cli import app
from storyengine.errors import StoryEngineError
from storyengine.workspace import Workspace

SPEC = """series: s
width: 320
height: 180
episodes:
  - id: day-1
    shots:
      - id: a
        still: still.png
        characters: [mara]
        duration: 2
"""


# ---------------------------------------------------------------- helpers
def snapshot(ws: Workspace) -> dict:
    """Every registry table's rows, plus (size, sha256) of every file under characters/ and renders/.

    The SQLite files themselves (``registry.db``, ``-wal``, ``-shm``) are left out of the listing:
    WAL bookkeeping changes their bytes on a read; their content is covered by the table dump.
    """
    tables: dict[str, list[dict]] = {}
    if ws.registry_path.exists():
        db = sqlite_utils.Database(ws.registry_path)
        try:
            tables = {t: list(db[t].rows) for t in sorted(db.table_names())}
        finally:
            db.close()
    files: dict[str, tuple[int, str]] = {}
    for top in (ws.characters, ws.renders):
        for p in sorted(top.rglob("*")):
            if p.is_file() and not p.name.startswith("registry.db"):
                files[str(p.relative_to(ws.root))] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return {"tables": tables, "files": files}


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(ws: Workspace, *args: object) -> str:
    """Run the CLI on ``ws``; it must exit 1 with nothing on stdout and leave the workspace unchanged.

    Returns stderr (one ``error: …`` message)."""
    before = snapshot(ws)
    res = cli(*args, "-w", ws.root)
    assert res.exit_code == 1, (res.exit_code, res.output, res.exception)
    assert res.stdout == ""
    assert snapshot(ws) == before
    return res.stderr


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w×h pixels (the size gates trip before any pixel is decoded)."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def lora_file(path: Path, tensors: dict | None = None) -> Path:
    t = tensors or {"transformer.blocks.0.attn1.to_q.lora_A.weight": np.zeros((4, 32), np.float32),
                    "transformer.blocks.0.attn1.to_q.lora_B.weight": np.ones((32, 4), np.float32)}
    save_file(t, str(path))
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory, astronaut, hopper) -> Path:
    """A workspace with two registered people, mara (3 photos) and grace (1), and episodes/still.png.

    Built once (dlib-face loads once); every test gets a copy."""
    from storyengine.register import register_character
    from storyengine.registry import Registry

    root = tmp_path_factory.mktemp("tpl")
    ws = Workspace.at(root / "ws").ensure()
    a = astronaut
    relit = np.clip(a[10:290, 30:370].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
    src = [save(root / "src" / "p1.png", a), save(root / "src" / "p2.jpg", a[:, ::-1].copy(), quality=88),
           save(root / "src" / "p3.png", relit)]
    reg = Registry.open(ws)
    try:
        register_character(reg, ws, "mara", src, kind="person", name="Mara")
        register_character(reg, ws, "grace", [save(root / "src" / "grace.png", hopper)], kind="person")
    finally:
        reg.close()
    save(ws.episodes / "still.png", a)
    return ws.root


@pytest.fixture
def w(template, tmp_path) -> Workspace:
    shutil.copytree(template, tmp_path / "ws")
    return Workspace.at(tmp_path / "ws")


@pytest.fixture
def src(template) -> Path:
    """The source folder of the template's registered photos (p1.png …, grace.png)."""
    return template.parent / "src"


def spec(ws: Workspace, text: str = SPEC, name: str = "s.yaml") -> Path:
    p = ws.episodes / name
    p.write_text(text)
    return p


def plan_refused(ws: Workspace, text: str) -> tuple[Path, str]:
    p = spec(ws, text)
    return p, refused(ws, "plan", p)


# ================================================================ photos (character add / add-photos)
def _add_refused(ws: Workspace, photo: Path, *extra: object) -> str:
    return refused(ws, "character", "add", "zoe", photo, *extra)


def _one_photo_refused(photo: Path, line: str, handle: str = "zoe") -> str:
    return f"error: no photo of {handle!r} was registered:\n  {photo}: {line}\n"


def test_01_corrupt_photo(w, tmp_path, astronaut):
    b = io.BytesIO()
    Image.fromarray(astronaut).save(b, "PNG")
    raw = bytearray(b.getvalue())
    raw[60:80] = b"\xff" * 20  # inside the first IDAT chunk
    p = tmp_path / "in" / "corrupt.png"
    p.parent.mkdir()
    p.write_bytes(bytes(raw))
    assert _add_refused(w, p) == _one_photo_refused(p, "unreadable photo: broken data stream when reading image file")


def test_02_truncated_photo(w, tmp_path, astronaut):
    b = io.BytesIO()
    Image.fromarray(astronaut).save(b, "JPEG")
    p = tmp_path / "in" / "trunc.jpg"
    p.parent.mkdir()
    p.write_bytes(b.getvalue()[: len(b.getvalue()) // 2])
    err = _add_refused(w, p)
    assert re.fullmatch(re.escape(f"error: no photo of 'zoe' was registered:\n  {p}: unreadable photo: image file is "
                                  "truncated (") + r"\d+ bytes not processed\)\n", err), err


def test_03_zero_byte_photo(w, tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert _add_refused(w, p) == _one_photo_refused(p, "unreadable photo: the file is empty (0 bytes)")


def test_04_not_an_image(w, tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("these are my notes, not a photo\n")
    assert _add_refused(w, p) == _one_photo_refused(p, "not an image (Pillow cannot identify it)")


def test_05_huge_dimensions(w, tmp_path):
    p = png_header_only(tmp_path / "big.png", 9000, 9000)
    assert _add_refused(w, p) == _one_photo_refused(p, "photo too large: 9000x9000 = 81000000 pixels (limit 80000000)")


def test_06_decompression_bomb(w, tmp_path):
    p = png_header_only(tmp_path / "bomb.png", 30000, 30000)
    assert _add_refused(w, p) == _one_photo_refused(
        p, "photo too large (decompression bomb): Image size (900000000 pixels) exceeds limit of 178956970 pixels, "
           "could be decompression bomb DOS attack.")


def test_07_missing_photo(w, tmp_path):
    p = tmp_path / "nowhere.png"
    assert _add_refused(w, p) == _one_photo_refused(p, "photo not found")


def test_08_photo_too_small(w, tmp_path, astronaut):
    p = save(tmp_path / "tiny.png", astronaut[:40, :50].copy())
    assert _add_refused(w, p) == _one_photo_refused(p, "too small: 50x40 (minimum 64 px on the short side)")


def test_09_no_face_in_a_person_photo(w, tmp_path, cat):
    p = save(tmp_path / "cat.png", cat)
    assert _add_refused(w, p) == _one_photo_refused(p, "no face found (dlib-face)")


def test_10_face_index_beyond_the_faces_found(w, tmp_path):
    hanks = Image.open(Path(__import__("insightface").__file__).parent / "data" / "images" / "Tom_Hanks_54745.png")
    p = save(tmp_path / "one-face.png", np.asarray(hanks.convert("RGB")))  # one face, not registered yet
    assert _add_refused(w, p, "--face", 9) == _one_photo_refused(
        p, "--face 9 asked, but 1 face(s) were found (0-0, left to right)")


def test_11_outlier_without_force(w, tmp_path, hopper):
    p = save(tmp_path / "someone-else.png", np.ascontiguousarray(hopper[:, ::-1]))
    err = refused(w, "character", "add-photos", "mara", p)
    assert re.fullmatch(re.escape(f"error: no photo of 'mara' was registered:\n  {p}: looks like a different person: "
                                  "distance ") + r"0\.\d\d, the others are within 0\.\d\d"
                        + re.escape(" (bound 0.09, dlib-face); use --force to keep it\n"), err), err


def test_12_duplicate_of_a_registered_photo(w, tmp_path, astronaut):
    p = save(tmp_path / "again.jpg", astronaut, quality=90)  # other bytes, same picture as mara's p1.png
    err = refused(w, "character", "add-photos", "mara", p)
    assert err == _one_photo_refused(p, "duplicate of p1.png (character 'mara'): perceptual-hash distance 0 bits", "mara")


def test_13_handle_that_would_escape_the_workspace(w, src):
    err = refused(w, "character", "add", "../x", src / "p1.png")
    assert err == ("error: handle '../x' is not allowed: use 1-63 lowercase letters, digits, '-' or '_', "
                   "starting with a letter or digit\n")
    assert not (w.root / "x").exists() and not (w.characters.parent / "x").exists()


def test_14_unknown_kind(w, src):
    # a usage error (exit 2) from the option's choices, before anything is read; the registry refuses it too
    before = snapshot(w)
    res = cli("character", "add", "zoe", src / "p1.png", "--kind", "robot", "-w", w.root)
    assert res.exit_code == 2 and res.stdout == "" and snapshot(w) == before
    assert "'robot' is not one of" in res.stderr and "'person', 'pet', 'object', 'drawn'" in res.stderr
    from storyengine.register import KINDS, register_character
    from storyengine.registry import Registry

    with pytest.raises(StoryEngineError, match="kind 'robot' is not one of person, pet, object, drawn"):
        register_character(Registry.open(w), w, "zoe", [src / "p1.png"], kind="robot")
    from typing import get_args

    from storyengine.cards import CharacterCard
    from storyengine.cli.characters import Kind

    assert get_args(Kind) == get_args(CharacterCard.model_fields["kind"].annotation) == KINDS  # one list of kinds


def test_15_unknown_handle_for_add_photos(w, src):
    err = refused(w, "character", "add-photos", "zoe", src / "p1.png")
    assert err == "error: unknown character 'zoe' (registered: mara, grace)\n"


# ================================================================ the series spec (storyengine plan)
def test_16_yaml_syntax_error_names_line_and_column(w):
    p, err = plan_refused(w, SPEC.replace("characters: [mara]", "characters: [mara\n        prompt: x"))
    assert err == f"error: {p}: YAML syntax error at line 10, column 15: expected ',' or ']', but got ':'\n"


def test_17_unknown_key(w):
    p, err = plan_refused(w, SPEC.replace("duration: 2", "duration: 2\n        colour: red"))
    assert err == ("error: invalid series spec:\n"
                   f"  {p}:11: episodes.0.shots.0.colour: Extra inputs are not permitted (got 'red')\n")


def test_18_wrong_type(w):
    p, err = plan_refused(w, SPEC.replace("duration: 2", "duration: long"))
    assert err == ("error: invalid series spec:\n"
                   f"  {p}:10: episodes.0.shots.0.duration: Input should be a valid number, unable to parse string "
                   "as a number (got 'long')\n")


@pytest.mark.parametrize("value", ["-2", "0"])
def test_19_negative_or_zero_duration(w, value):
    p, err = plan_refused(w, SPEC.replace("duration: 2", f"duration: {value}"))
    assert err == ("error: invalid series spec:\n"
                   f"  {p}:10: episodes.0.shots.0.duration: Input should be greater than 0 (got {int(value)})\n")


def test_20_unknown_character(w):
    p, err = plan_refused(w, SPEC.replace("[mara]", "[nobody]"))
    assert err == f"error: {p}: episode 'day-1', shot 'a': unknown character 'nobody' (registered: grace, mara)\n"


def test_21_missing_still(w):
    p, err = plan_refused(w, SPEC.replace("still.png", "stills/gone.png"))
    assert err == f"error: {p}: episode 'day-1', shot 'a': still not found: {w.episodes / 'stills' / 'gone.png'}\n"


def test_22_duplicate_shot_id(w):
    p, err = plan_refused(w, SPEC + "      - id: a\n        still: still.png\n")
    assert err == ("error: invalid series spec:\n"
                   f"  {p}:1: (top level): Value error, duplicate shot id 'a' (episode 'day-1')\n")


def test_23_more_characters_than_the_backend_supports(w):
    p, err = plan_refused(w, SPEC.replace("width: 320", "backend: consisid\nwidth: 320").replace("[mara]", "[mara, grace]"))
    assert err == f"error: {p}: episode 'day-1', shot 'a': 2 characters, but back-end 'consisid' supports at most 1\n"


def test_24_unknown_backend(w):
    _, err = plan_refused(w, SPEC.replace("width: 320", "backend: teleport\nwidth: 320"))
    assert err == f"error: unknown back-end 'teleport'; available: {', '.join(plugins.backend_names())}\n"


def test_25_still_path_that_escapes_the_workspace(w):
    outside = w.root.parent / "etc" / "passwd"  # ../../etc/passwd from episodes/s.yaml
    outside.parent.mkdir()
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    p, err = plan_refused(w, SPEC.replace("still.png", "../../etc/passwd"))
    assert err == f"error: {p}: episode 'day-1', shot 'a': still '../../etc/passwd' is outside the workspace {w.root} and the spec's folder\n"


def test_26_adapter_for_another_base_model(w, tmp_path):
    from storyengine.characters import add_adapter
    from storyengine.registry import Registry

    reg = Registry.open(w)
    try:  # stored fine: the family is checked where the adapter would be loaded
        row = add_adapter(reg, w, "mara", lora_file(tmp_path / "mara-ltx.safetensors"), base="Lightricks/LTX-Video",
                          trigger="mara_p")
    finally:
        reg.close()
    p, err = plan_refused(w, SPEC.replace("width: 320", "backend: wan\nwidth: 320"))
    assert err == (f"error: {p}: episode 'day-1', shot 'a': wan: adapter {str(w.root / row['path'])!r} was trained for "
                   "'Lightricks/LTX-Video' (ltx); it loads into ltx only\n")


def test_27_still_with_another_aspect_ratio_is_cover_cropped(w, astronaut):
    """No refusal: the still is scaled to cover the series' frame and centre-cropped, and the plan says so."""
    from storyengine.backends.motion import MotionBackend

    tall = save(w.episodes / "tall.png", np.ascontiguousarray(np.repeat(astronaut[:, 150:250], 2, axis=0)))  # 100x600
    p = spec(w, SPEC.replace("still.png", "tall.png"))
    before = snapshot(w)
    res = cli("plan", p, "-w", w.root, "--json")
    assert res.exit_code == 0, res.output
    assert res.stderr == ("warning: episode 'day-1', shot 'a': still tall.png is 100x600 (aspect 0.17), the frame is "
                          "320x180 (aspect 1.78): it is scaled to cover the frame and centre-cropped\n")
    assert snapshot(w) == before
    assert MotionBackend.still_for_size(tall, 320, 180).shape == (180, 320, 3)


# ================================================================ settings (storyengine.toml)
def test_28_unknown_setting(w):
    (w.root / "storyengine.toml").write_text("[storyengine]\ncolour = 'red'\n")
    from storyengine.settings import Settings

    known = ", ".join(sorted(f for f in Settings.__dataclass_fields__))
    assert refused(w, "character", "list") == f"error: unknown setting 'colour'; known settings: {known}\n"


def test_29_invalid_toml_syntax(w):
    (w.root / "storyengine.toml").write_text("[storyengine]\nmax_takes = = 3\n")
    err = refused(w, "character", "list")
    assert err == f"error: {w.root / 'storyengine.toml'}: Invalid value (at line 2, column 13)\n"


def test_30_setting_of_the_wrong_type(w):
    (w.root / "storyengine.toml").write_text("[storyengine]\nmax_takes = 'many'\n")
    assert refused(w, "character", "list") == "error: setting 'max_takes' has an invalid value 'many'\n"


# ================================================================ encoders and back-ends
def test_31_unknown_encoder(w):
    err = refused(w, "character", "reembed", "mara", "--encoder", "nope")
    assert err == f"error: unknown encoder 'nope'; available: {', '.join(plugins.encoder_names())}\n"


def test_32_hub_model_not_available_offline(w, monkeypatch):
    from storyengine.backends.wan import WanBackend
    from storyengine.errors import BackendError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # conftest also points HF_HOME at an empty folder
    before = snapshot(w)
    with pytest.raises(BackendError) as e:
        _ = WanBackend({"model": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"}).pipeline
    assert str(e.value) == ("wan: weights for 'Wan-AI/Wan2.1-I2V-14B-480P-Diffusers' are not available locally "
                            "(HF_HUB_OFFLINE=1); fetch them with `hf download "
                            "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers --include 'model_index.json' '*/*'` "
                            "or set the back-end option model to a local folder")
    assert snapshot(w) == before


# ================================================================ adapters
@pytest.mark.parametrize("suffix", [".bin", ".pt"])
def test_33_pickle_adapter(w, tmp_path, suffix):
    p = tmp_path / f"lora{suffix}"
    p.write_bytes(pickle.dumps({"lora_A": [1, 2, 3]}, protocol=4))
    err = refused(w, "character", "adapter", "add", "mara", p, "--base", "wan", "--trigger", "sks")
    assert err == (f"error: {p}: refused: {suffix} files are Python pickles, which can run code when loaded; "
                   "convert the adapter to .safetensors\n")


def test_34_pickle_named_safetensors(w, tmp_path):
    p = tmp_path / "lora.safetensors"
    p.write_bytes(pickle.dumps({"lora_A": [1, 2, 3]}, protocol=4))
    err = refused(w, "character", "adapter", "add", "mara", p, "--base", "wan", "--trigger", "sks")
    assert err == (f"error: {p}: refused: it is a Python pickle; pickles can run code when loaded. "
                   "Save the adapter with safetensors (safetensors.torch.save_file)\n")


def test_35_safetensors_that_is_not_a_lora(w, tmp_path):
    p = lora_file(tmp_path / "full.safetensors", {"unet.conv.weight": np.zeros((3, 3), np.float32)})
    err = refused(w, "character", "adapter", "add", "mara", p, "--base", "wan", "--trigger", "sks")
    assert err == (f"error: {p}: no LoRA tensors: none of its 1 tensor names contains "
                   "lora_A/lora_B/lora_down/lora_up (first: unet.conv.weight)\n")


# ================================================================ import / export
def _export(ws: Workspace, tmp_path: Path) -> Path:
    out = tmp_path / "mara.zip"
    res = cli("character", "export", "mara", out, "-w", ws.root)
    assert res.exit_code == 0, res.output
    return out


def test_36_import_archive_with_dotdot_member(w, tmp_path):
    out = _export(w, tmp_path)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(out) as z, zipfile.ZipFile(evil, "w") as e:
        for i in z.infolist():
            e.writestr("../../evil.png" if i.filename.startswith("photos/") and "../../evil.png" not in e.namelist()
                       else i.filename, z.read(i.filename))
    err = refused(w, "character", "import", evil, "--as", "copy")
    assert err == (f"error: {evil}: refused import: unexpected member '../../evil.png' "
                   "(only character.json, photos/<file>, adapters/<file>)\n")
    assert not (w.root.parent / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()


def test_37_import_of_an_existing_handle_without_as(w, tmp_path):
    out = _export(w, tmp_path)
    err = refused(w, "character", "import", out)
    assert err == f"error: {out}: character 'mara' is already registered; import it under another handle with --as NEW\n"


# ================================================================ render
def _tiny_spec(ws: Workspace) -> Path:
    return spec(ws, "series: s\nwidth: 64\nheight: 36\nfps: 8\nepisodes:\n  - id: day-1\n    title_duration: 0\n"
                    "    shots:\n      - id: a\n        still: still.png\n        duration: 0.5\n")


def test_38_render_while_another_render_holds_the_lock(w, monkeypatch):
    import storyengine.shots as render_mod
    from storyengine.lock import WorkspaceLock

    def no_rendering(*a, **k):
        raise AssertionError("a take was rendered while another process held the workspace lock")

    monkeypatch.setattr(render_mod, "write_take", no_rendering)
    p = _tiny_spec(w)
    with WorkspaceLock(w):
        err = refused(w, "render", p)
    assert re.fullmatch(re.escape(f"error: workspace {w.root} is being rendered by pid ") + r"\d+ \(`storyengine[^`]*`, "
                        r"started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\)"
                        + re.escape("; wait for it to finish, or pass --wait SECONDS to queue behind it\n"), err), err


def test_39_output_folder_cannot_be_written(w, monkeypatch):
    import storyengine.shots as render_mod

    def no_rendering(*a, **k):
        raise AssertionError("a take was rendered although its folder cannot be written")

    monkeypatch.setattr(render_mod, "write_take", no_rendering)
    (w.renders / "s").write_text("a file where the series folder should be\n")
    p = _tiny_spec(w)
    err = refused(w, "render", p, "--max-takes", 1)
    assert err == f"error: cannot write into {w.renders / 's'}: Not a directory\n"


# ================================================================ messages are printed as text, not as Rich markup
@pytest.mark.parametrize("name", ["me [draft].png", "in [/x]/me.png"])  # a folder "in [" holding "x]/me.png"
def test_40_brackets_in_a_refused_path_are_printed_verbatim(w, tmp_path, name):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    assert _add_refused(w, p) == _one_photo_refused(p, "unreadable photo: the file is empty (0 bytes)")


def test_41_brackets_in_a_refused_line_of_a_partly_accepted_add(w, tmp_path):
    hanks = Image.open(Path(__import__("insightface").__file__).parent / "data" / "images" / "Tom_Hanks_54745.png")
    good = save(tmp_path / "tom.png", np.asarray(hanks.convert("RGB")))
    bad = tmp_path / "in [/draft]" / "tom.png"  # the path reads "…/in [/draft]/tom.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    before = snapshot(w)
    res = cli("character", "add", "tom", good, bad, "-w", w.root)
    assert res.exit_code == 0, res.output
    assert res.stderr == f"refused: {bad}: unreadable photo: the file is empty (0 bytes)\n"
    after = snapshot(w)
    assert [r["source"] for r in after["tables"]["photos"] if r["handle"] == "tom"] == ["tom.png"]
    assert {k: v for k, v in after["tables"].items() if k not in ("characters", "photos", "embeddings", "identity")} \
        == {k: v for k, v in before["tables"].items() if k not in ("characters", "photos", "embeddings", "identity")}


# ================================================================ issue 14: nothing outside the workspace is touched
def _outside_tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _link_photos_outside(w: Workspace, tmp_path: Path, level: str) -> Path:
    """Move mara's photos/ (or her whole folder) outside the workspace and leave a link in its place."""
    outside = tmp_path / "outside"
    inner = w.characters / "mara" / ("photos" if level == "photos" else "")
    shutil.move(str(inner), str(outside))
    inner.symlink_to(outside, target_is_directory=True)
    return outside


@pytest.mark.parametrize("level", ["photos", "folder"])
def test_46_remove_photo_through_a_link_outside(w, tmp_path, level):
    outside = _link_photos_outside(w, tmp_path, level)
    before_out = _outside_tree(outside)
    pid = snapshot(w)["tables"]["photos"][0]["id"]
    err = refused(w, "character", "remove", "mara", "--photo", pid, "--yes")
    link = w.characters / "mara" / ("photos" if level == "photos" else "")
    link = link if level == "photos" else w.characters / "mara"
    assert err.startswith(f"error: path '{link}") and "escapes the workspace" in err and err.count("\n") == 1, err
    assert _outside_tree(outside) == before_out


@pytest.mark.parametrize("level", ["photos", "folder"])
def test_47_add_photos_through_a_link_outside(w, tmp_path, astronaut, level):
    outside = _link_photos_outside(w, tmp_path, level)
    before_out = _outside_tree(outside)
    new = save(tmp_path / "new.png", np.ascontiguousarray(astronaut[20:280, 60:360]))
    err = refused(w, "character", "add-photos", "mara", new, "--force")
    assert "escapes the workspace" in err and err.startswith("error: path '") and err.count("\n") == 1, err
    assert _outside_tree(outside) == before_out


def test_48_remove_character_whose_folder_links_outside(w, tmp_path):
    outside = _link_photos_outside(w, tmp_path, "folder")
    before_out = _outside_tree(outside)
    err = refused(w, "character", "remove", "mara", "--yes")
    assert err == f"error: path '{w.characters / 'mara'}' escapes the workspace '{w.root}'\n"
    assert _outside_tree(outside) == before_out


# ================================================================ issue 14: clear errors instead of tracebacks
def _db_refused(w: Workspace, *args: object) -> str:
    """Like ``refused`` for a registry that cannot be read as a table dump: its bytes must not change."""
    db = w.registry_path
    before = db.read_bytes()
    res = cli(*args, "-w", w.root)
    assert res.exit_code == 1 and res.stdout == "", (res.exit_code, res.output, res.exception)
    assert db.read_bytes() == before
    return res.stderr


def test_57_registry_that_is_not_a_database(w):
    w.registry_path.write_bytes(b"my notes about mara\n" * 50)
    for f in w.characters.glob("registry.db-*"):
        f.unlink()
    err = _db_refused(w, "character", "list")
    assert err == (f"error: {w.registry_path} is not a storyengine registry (not a SQLite database); restore it "
                   "from a backup or move it aside\n")


def test_58_truncated_registry(w):
    for f in w.characters.glob("registry.db-*"):
        f.unlink()
    data = w.registry_path.read_bytes()
    w.registry_path.write_bytes(data[:8192])
    err = _db_refused(w, "character", "show", "mara")
    assert err.startswith("error: registry ") and "damaged" in err and err.count("\n") == 1, err


def test_59_registry_from_a_newer_storyengine(w):
    db = sqlite_utils.Database(w.registry_path)
    db["_migrations"].insert({"name": "m999_future", "applied_at": "2030-01-01T00:00:00+00:00"})
    db.close()
    err = refused(w, "character", "list")
    assert err == (f"error: {w.registry_path} was made by a newer storyengine (schema step m999_future is unknown "
                   "to this version); upgrade storyengine to use this workspace\n")


def test_60_workspace_option_names_a_file(w, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("not a folder\n")
    for args in (("character", "list"), ("character", "add", "zoe", tmp_path / "x.png"), ("report",)):
        res = cli(*args, "-w", f)
        assert res.exit_code == 1 and res.stderr == f"error: {f} is a file, not a workspace folder; pass -w DIR with a folder\n"
    assert f.read_text() == "not a folder\n"


def test_61_lock_file_is_a_folder(w):
    (w.renders / ".lock").mkdir()
    p = _tiny_spec(w)
    err = refused(w, "render", p)
    assert err == (f"error: {w.renders / '.lock'} is a folder; it must be the lock file storyengine makes: remove the "
                   "folder (nothing of storyengine is in it) and render again\n")


def test_62_spec_that_is_not_utf8(w):
    p = w.episodes / "s.yaml"
    p.write_bytes(SPEC.replace("series: s", "series: s\n# caf\xe9").encode("latin-1"))
    err = refused(w, "plan", p)
    assert err == f"error: {p}: not UTF-8 text (line 2, byte b'\\xe9'); save the spec as UTF-8\n"


def test_63_storyengine_key_that_is_not_a_table(w):
    (w.root / "storyengine.toml").write_text("storyengine = 5\n")
    err = refused(w, "character", "list")
    assert err == (f"error: {w.root / 'storyengine.toml'}: `storyengine` must be a table of settings ([storyengine] "
                   "followed by `name = value` lines), got 5\n")


def test_64_seed_outside_0_to_2_63(w):
    p, err = plan_refused(w, SPEC.replace("duration: 2", "duration: 2\n        seed: 9223372036854775808"))
    assert err == ("error: invalid series spec:\n"
                   f"  {p}:11: episodes.0.shots.0.seed: Input should be less than or equal to 9223372036854775807 "
                   "(got 9223372036854775808)\n")


@pytest.mark.parametrize("size", [(1, 1), (20000, 20000)])
def test_65_still_too_small_or_too_large(w, size):
    if size == (1, 1):
        save(w.episodes / "still.png", np.zeros((1, 1, 3), np.uint8))
        why = "is too small: 1x1 (minimum 16 px on the short side)"
        p, err = plan_refused(w, SPEC)
        assert err == f"error: {p}: episode 'day-1', shot 'a': still still.png {why}\n"
    else:  # refused by the still loader that runs at plan (Pillow's bomb check), before the lock
        png_header_only(w.episodes / "still.png", *size)
        p, err = plan_refused(w, SPEC)
        assert err == (f"error: {w.episodes / 'still.png'}: still too large (decompression bomb): Image size "
                       "(400000000 pixels) exceeds limit of 178956970 pixels, could be decompression bomb DOS attack.\n")


def test_66_animated_gif_still_uses_its_first_frame(w, astronaut):
    frames = [Image.fromarray(np.ascontiguousarray(astronaut[:180, :320])), Image.new("RGB", (320, 180), "red")]
    frames[0].save(w.episodes / "still.gif", save_all=True, append_images=frames[1:])
    p = spec(w, SPEC.replace("still.png", "still.gif"))
    res = cli("plan", p, "-w", w.root)
    assert res.exit_code == 0, res.output
    assert "warning: episode 'day-1', shot 'a': still still.gif is animated (2 frames): its first frame is used\n" \
        in res.stderr


@pytest.mark.parametrize("line, why", [
    ("check_mode = 'fast'", "'fast': it must be one of full, sampled"),
    ("preset = 'quick'", "'quick': it must be one of ultrafast, superfast, veryfast, faster, fast, medium, slow, "
                         "slower, veryslow, placebo"),
    ("max_takes = 0", "0: it must be at least 1"),
    ("check_stride = 0", "0: it must be at least 1"),
    ("detect_stride = -2", "-2: it must be at least 1"),
    ("crf = 23.5", "23.5: it must be a whole number"),
    ("bound = 1.5", "1.5: it must be a cosine similarity between -1 and 1, or none"),
    ("bound = true", "True: it must be a cosine similarity between -1 and 1, or none"),
])
def test_67_setting_out_of_range(w, line, why):
    (w.root / "storyengine.toml").write_text(f"[storyengine]\n{line}\n")
    name = line.split(" ")[0]
    assert refused(w, "character", "list") == f"error: setting {name!r} has an invalid value {why}\n"


def test_68_boolean_bound_in_a_shot(w):
    p, err = plan_refused(w, SPEC.replace("duration: 2", "duration: 2\n        bound: true"))
    assert err == ("error: invalid series spec:\n"
                   f"  {p}:11: episodes.0.shots.0.bound: Input should be a valid number (got True)\n")


def test_69_duplicate_yaml_key(w):
    p, err = plan_refused(w, SPEC.replace("duration: 2", "duration: 2\n        duration: 3"))
    assert err == f"error: {p}:11: duplicate key 'duration' (first at line 10); YAML would keep only the last one\n"


def test_70_registered_photo_deleted_by_hand(w):
    row = snapshot(w)["tables"]["photos"][0]
    (w.root / row["path"]).unlink()
    line = (f"photo {row['id']} ({row['source']}) of 'mara' is missing: {w.root / row['path']}; put it back, or remove it "
            f"with `storyengine character remove mara --photo {row['id']} --yes`")
    res = cli("character", "show", "mara", "-w", w.root)
    assert res.exit_code == 0 and f"warning: {line}\n" in res.stderr, res.output
    p, err = plan_refused(w, SPEC)
    assert err == f"error: {p}: episode 'day-1', shot 'a': {line}\n"
    err = refused(w, "render", p)
    assert err == f"error: {p}: episode 'day-1', shot 'a': {line}\n"


def test_71_disk_full_and_file_too_large_wording():
    import errno

    from storyengine.cli.common import plain_error

    for code, text in ((errno.ENOSPC, "No space left on device"), (errno.EFBIG, "File too large")):
        assert plain_error(OSError(code, text, "/ws/renders/s/day-1.mp4")) == (
            f"cannot write /ws/renders/s/day-1.mp4: file too large / disk full ({text}); nothing was kept")


@pytest.mark.parametrize("args", [("report",), ("character", "list"), ("takes", "list", "a")])
def test_72_reading_commands_outside_a_workspace_create_nothing(tmp_path, args):
    d = tmp_path / "not-a-ws"
    d.mkdir()
    res = cli(*args, "-w", d)
    assert res.exit_code == 1 and res.stderr.startswith(f"error: {d} is not a storyengine workspace"), res.output
    assert list(d.iterdir()) == []


def test_73_read_only_workspace_still_reads(w, monkeypatch):
    """A read-only workspace (tests run as root, so the check is simulated): reading commands work and
    open the registry immutable; a writing command says the registry is read-only."""
    import os as _os

    import storyengine.registry as registry

    monkeypatch.setattr(registry.os, "access", lambda p, mode: mode != _os.W_OK and _os.path.exists(p))
    for f in w.characters.glob("registry.db-*"):
        f.unlink()
    before = snapshot(w)
    res = cli("character", "list", "--json", "-w", w.root)
    assert res.exit_code == 0, res.output
    assert sorted(c["handle"] for c in __import__("json").loads(res.stdout)) == ["grace", "mara"]
    assert sorted(p.name for p in w.characters.iterdir() if p.name.startswith("registry.db")) == ["registry.db"]
    err = refused(w, "character", "consent", "mara", "Mara, 2026")
    assert err.startswith(f"error: registry ") and "read-only here" in err, err
    assert snapshot(w) == before
