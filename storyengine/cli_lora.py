"""`storyengine character train-lora`: train a character LoRA on a video model and register it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .cli import WorkspaceOpt, _fail, _ws, character_app, console, err_console
from .errors import StoryEngineError


@character_app.command("train-lora")
def character_train_lora(
    handle: str = typer.Argument(..., help="The registered character to train on (its photos are the data)."),
    base: str = typer.Option(..., "--base", help="Back-end whose model is trained: wan | wan-vace | ltx."),
    model: Optional[str] = typer.Option(None, "--model", help="Hub id or local folder (default: the back-end's default model)."),
    rank: int = typer.Option(16, "--rank", min=1, max=256, help="LoRA rank."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimiser steps."),
    lr: float = typer.Option(1e-4, "--lr", min=0.0, help="Learning rate (AdamW)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", min=16, help="Square training size in pixels (default 480 Wan, 512 LTX)."),
    trigger: Optional[str] = typer.Option(None, "--trigger", help="Word that names the character in prompts (default: the handle)."),
    weight: float = typer.Option(1.0, "--weight", min=0.0, max=2.0, help="Adapter weight used when shots load it."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from the newest checkpoint of the same settings."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds LoRA init, noise and timesteps."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bfloat16 on CUDA, float32 on CPU), float16, bfloat16, float32."),
    workspace: Path = WorkspaceOpt,
) -> None:
    """Train a LoRA adapter on the character's photos (flow matching) and store it in the registry."""
    from .lora import train_character
    from .registry import Registry

    try:
        ws = _ws(workspace)
        reg = Registry.open(ws)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task(f"{handle}: loading {base}", total=steps)

            def progress(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, description=f"{handle} on {base}: loss {loss:.4f}")

            meta = train_character(reg, ws, handle, base=base, model=model, trigger=trigger, weight=weight, rank=rank,
                                   steps=steps, lr=lr, resolution=resolution, checkpoint_every=checkpoint_every,
                                   resume=resume, seed=seed, device=device, dtype=dtype, progress=progress)
    except StoryEngineError as e:
        _fail(e)
    adapter = meta.get("adapter") or {}
    t = Table("field", "value", title=f"adapter: {handle}", show_header=False)
    for k, v in [("file", adapter.get("path", meta["path"])), ("sha256", meta["sha256"][:16] + "…"),
                 ("base", f"{base} ({meta['base_model']})"), ("trigger", meta["trigger"]), ("rank", str(meta["rank"])),
                 ("steps", str(meta["steps"]) + (f" (resumed from {meta['resumed_from']})" if meta["resumed_from"] else "")),
                 ("loss", f"{meta['initial_loss']:.4f} → {meta['final_loss']:.4f}")]:
        t.add_row(k, str(v))
    console.print(t)
