"""How encoders and back-ends are found: Python entry points, built-ins registered the same way.

Third-party packages add a back-end with::

    [project.entry-points."storyengine.backends"]
    my-model = "my_package.backend:MyBackend"

Built-ins are listed here too so a source checkout that was never pip-installed still works.
"""

from __future__ import annotations

import importlib
import json
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from .errors import BackendError, EncoderError

BUILTIN_ENCODERS: dict[str, str] = {
    "dlib-face": "storyengine.encoders.dlib_face:DlibFaceEncoder",
    "appearance": "storyengine.encoders.appearance:AppearanceEncoder",
    "arcface": "storyengine.encoders.insightface_face:ArcFaceEncoder",
    "clip": "storyengine.encoders.clip_appearance:ClipEncoder",
}
BUILTIN_BACKENDS: dict[str, str] = {
    "motion": "storyengine.backends.motion:MotionBackend",
    "wan": "storyengine.backends.wan:WanBackend",
    "wan-vace": "storyengine.backends.wan_vace:WanVaceBackend",
    "ltx": "storyengine.backends.ltx:LTXBackend",
    "cogvideox": "storyengine.backends.cogvideox:CogVideoXBackend",
    "svd": "storyengine.backends.svd:SVDBackend",
    "consisid": "storyengine.backends.consisid:ConsisIDBackend",
}


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=None)
def _registered(group: str) -> dict[str, str]:
    found = dict(BUILTIN_ENCODERS if group == "storyengine.encoders" else BUILTIN_BACKENDS)
    for ep in entry_points(group=group):
        found[ep.name] = ep.value
    return found


def encoder_names() -> list[str]:
    return sorted(_registered("storyengine.encoders"))


def backend_names() -> list[str]:
    return sorted(_registered("storyengine.backends"))


def encoder_class(name: str) -> type:
    refs = _registered("storyengine.encoders")
    if name not in refs:
        raise EncoderError(f"unknown encoder {name!r}; available: {', '.join(sorted(refs))}")
    return _load(refs[name])


def backend_class(name: str) -> type:
    refs = _registered("storyengine.backends")
    if name not in refs:
        raise BackendError(f"unknown back-end {name!r}; available: {', '.join(sorted(refs))}")
    return _load(refs[name])


_ENCODER_CACHE: dict[tuple[str, str], Any] = {}


def encoder_config(name: str, settings: Any) -> dict[str, Any]:
    """The constructor arguments ``settings`` gives encoder ``name`` (its ``settings_kwargs``)."""
    cls = encoder_class(name)
    hook = getattr(cls, "settings_kwargs", None)
    return dict(hook(settings)) if hook else {}


def get_encoder(name: str, settings: Any) -> Any:
    """Return a shared instance of encoder ``name`` configured by ``settings`` (models load once per config).

    ``settings`` (a ``Settings``) picks weights: ``clip_model``/``clip_pretrained`` for clip,
    ``arcface_pack``/``arcface_root`` for arcface. It is required: the caller knows which workspace's
    ``storyengine.toml`` applies (``Settings.load(ws.root)``); a silent env-only default once made
    references built at render time disagree with the vectors registered under the workspace's weights.
    Instances are cached per (name, configuration), so two configurations of one encoder coexist.
    """
    kwargs = encoder_config(name, settings)
    key = (name, json.dumps(kwargs, sort_keys=True, default=str))
    if key not in _ENCODER_CACHE:
        _ENCODER_CACHE[key] = encoder_class(name)(**kwargs)
    return _ENCODER_CACHE[key]
