"""`storyengine backends`: every video back-end, what it conditions on, its native timing and its VRAM estimate."""

from __future__ import annotations

import math
from typing import Any

from .common import Col, JsonOpt, View, command, commands, emit_json, show

app = commands()

MODES = ("none", "model", "group", "sequential")


def backend_rows() -> list[dict[str, Any]]:
    """One row per registered back-end, its default options; VRAM estimated on the meta device (GiB)."""
    from .. import plugins
    from ..backends._diffusers import DiffusersBackend

    rows = []
    for bid in plugins.backend_names():
        cls = plugins.backend_class(bid)
        opts = cls.Options()
        row: dict[str, Any] = {"backend": bid, "family": getattr(cls, "family", "") or cls.__doc__.strip().splitlines()[0]}
        if issubclass(cls, DiffusersBackend):
            frames, fps = cls.native_timing(opts)
            conditions = list(cls.conditions_on)
            if not cls.supports_lora and "lora" in conditions:
                conditions.remove("lora")
            per_mode = {m: cls.estimate_gib(opts, m) for m in MODES}
            row.update({
                "model": opts.model, "native_frames": frames, "native_fps": fps, "frame_step": cls.frame_step_for(opts),
                "size_multiple": cls.size_multiple, "conditions_on": conditions,
                "offload": opts.offload, "vae_tiling": opts.vae_tiling,
                "vram_gib": cls.estimate_gib(opts),
                "vram_gib_per_offload": per_mode,
            })
        else:
            row.update({"model": None, "native_frames": None, "native_fps": None, "frame_step": cls.frame_step_for(opts),
                        "size_multiple": 1, "conditions_on": ["still"], "offload": None, "vae_tiling": None,
                        "vram_gib": 0.0, "vram_gib_per_offload": {}})
        for k, v in list(row.items()):
            if isinstance(v, float) and math.isnan(v):
                row[k] = None
        row["vram_gib_per_offload"] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                      for k, v in row["vram_gib_per_offload"].items()}
        rows.append(row)
    return rows


def backends_view(rows: list[dict[str, Any]]) -> View:
    """The back-ends table; a narrow terminal drops the per-mode estimates first, then the model id."""
    fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    v = View("video back-ends (VRAM: estimated peak GiB at the native size, default options)",
             [Col("back-end", "id"), Col("model", "id", drop=2), Col("native", "num"), Col("multiple", "num", drop=1),
              Col("conditions on", "text"), Col("default"), Col("VRAM GiB", "num"),
              *[Col(m, "num", drop=1) for m in MODES]])
    for r in rows:
        native = f"{r['native_frames']} @ {r['native_fps']} fps" if r["native_frames"] else "any"
        default = f"{r['offload']}{' + tiling' if r['vae_tiling'] else ''}" if r["offload"] else "–"
        v.add(r["backend"], r["model"] or "–", native, r["size_multiple"], ", ".join(r["conditions_on"]), default,
              fmt(r["vram_gib"]), *[fmt(r["vram_gib_per_offload"].get(m)) for m in MODES])
    return v


@command(app, "backends")
def backends_cmd(as_json: bool = JsonOpt) -> None:
    """List the video back-ends: model family, native frames/fps, size multiple, conditioning, estimated peak VRAM.

    Example: storyengine backends --json
    """
    rows = backend_rows()
    if as_json:
        emit_json(rows)
        return
    show(backends_view(rows))
