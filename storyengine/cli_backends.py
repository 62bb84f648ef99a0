"""`storyengine backends`: every video back-end, what it conditions on, its native timing and its VRAM estimate."""

from __future__ import annotations

import json
import math
from typing import Any

import typer
from rich.table import Table

from .cli import app, console

MODES = ("none", "model", "group", "sequential")


def backend_rows() -> list[dict[str, Any]]:
    """One row per registered back-end, its default options; VRAM estimated on the meta device (GiB)."""
    from . import plugins
    from .backends._diffusers import DiffusersBackend

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


@app.command("backends")
def backends_cmd(as_json: bool = typer.Option(False, "--json", help="One JSON object per back-end.")) -> None:
    """List the video back-ends: model family, native frames/fps, size multiple, conditioning, estimated peak VRAM."""
    rows = backend_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not console.is_terminal:  # pipes get full values, tab-separated
        typer.echo("\t".join(["backend", "model", "native_frames", "native_fps", "size_multiple", "conditions_on", "offload",
                              "vae_tiling", "vram_gib", *[f"vram_gib_{m}" for m in MODES]]))
        for r in rows:
            typer.echo("\t".join(str("" if v is None else v) for v in [
                r["backend"], r["model"], r["native_frames"], r["native_fps"], r["size_multiple"], ",".join(r["conditions_on"]),
                r["offload"], r["vae_tiling"], r["vram_gib"], *[r["vram_gib_per_offload"].get(m) for m in MODES]]))
        return
    t = Table("back-end", "model", "native", "multiple", "conditions on", "default", "VRAM GiB", *[f"{m}" for m in MODES],
              title="video back-ends (VRAM: estimated peak at the native size, default options)")
    fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    for r in rows:
        native = f"{r['native_frames']} @ {r['native_fps']} fps" if r["native_frames"] else "any"
        default = f"{r['offload']}{' + tiling' if r['vae_tiling'] else ''}" if r["offload"] else "–"
        t.add_row(r["backend"], r["model"] or "–", native, str(r["size_multiple"]), ", ".join(r["conditions_on"]), default,
                  fmt(r["vram_gib"]), *[fmt(r["vram_gib_per_offload"].get(m)) for m in MODES])
    console.print(t)
