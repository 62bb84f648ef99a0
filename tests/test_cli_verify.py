"""`storyengine verify`: valid (0), tampered (1), missing (2)."""

import json

import numpy as np
from typer.testing import CliRunner

from conftest import save
from storyengine import media
from storyengine.cli import app
from storyengine.provenance import ALGORITHMIC_MEDIA, ensure_dev_credential, sign_clip


def test_verify_exit_codes(tmp_path):
    clip = tmp_path / "clip.mp4"
    with media.VideoWriter(clip, 64, 48, 12) as w:
        for i in range(12):
            w.write(np.full((48, 64, 3), i * 20, np.uint8))
    runner = CliRunner()
    assert runner.invoke(app, ["verify", str(clip)]).exit_code == 2
    still = save(tmp_path / "still.png", np.full((32, 32, 3), 200, np.uint8))
    sign_clip(clip, credential=ensure_dev_credential(tmp_path / "cred"), backend_id="motion", model=None, seed=5,
              source_still=still, digital_source_type=ALGORITHMIC_MEDIA, title="clip")
    r = runner.invoke(app, ["verify", str(clip)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["verify", str(clip), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["state"] == "valid" and doc["digital_source_types"] == [ALGORITHMIC_MEDIA], doc
    data = bytearray(clip.read_bytes())
    i = data.index(b"mdat") + 64
    data[i] ^= 0xFF
    clip.write_bytes(bytes(data))
    assert runner.invoke(app, ["verify", str(clip)]).exit_code == 1
