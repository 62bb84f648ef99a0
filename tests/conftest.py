"""Shared fixtures: an isolated environment, real faces from installed packages, a fresh workspace."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RUN_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: set RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No hub, no user settings: every test sees only what it sets up."""
    for k in list(os.environ):
        if k.startswith("STORYENGINE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf")))
    # the development C2PA credential is created once per session, never in the user's config dir
    monkeypatch.setenv("STORYENGINE_C2PA_DIR", str(tmp_path_factory.getbasetemp() / "c2pa"))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA portrait of Eileen Collins (public domain), shipped by scikit-image; cropped above the suit patch."""
    from skimage import data

    return data.astronaut()[:300, 40:440].copy()


@pytest.fixture(scope="session")
def hopper() -> np.ndarray:
    """US Navy portrait of Grace Hopper (public domain), shipped by matplotlib."""
    import matplotlib.cbook as cbook

    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")).copy()


@pytest.fixture(scope="session")
def cat() -> np.ndarray:
    from skimage import data

    return data.chelsea().copy()


@pytest.fixture
def ws(tmp_path):
    from storyengine.workspace import Workspace

    return Workspace.at(tmp_path / "ws").ensure()


@pytest.fixture
def reg(ws):
    from storyengine.registry import Registry

    r = Registry.open(ws)
    yield r
    r.close()


def save(path: Path, rgb: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


@pytest.fixture
def person_photos(tmp_path, astronaut) -> list[Path]:
    """Three different photos of one face: original crop, mirrored, and re-lit with a tighter frame."""
    a = astronaut
    relit = np.clip(a[10:290, 30:370].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
    return [
        save(tmp_path / "p1.png", a),
        save(tmp_path / "p2.jpg", a[:, ::-1].copy(), quality=88),
        save(tmp_path / "p3.png", relit),
    ]
