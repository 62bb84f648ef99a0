"""`storyengine character train-lora`: train a character LoRA on a video model and register it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Optional

import typer

from ..errors import StoryEngineError
from .common import Col, JsonOpt, View, WorkspaceOpt, command, commands, emit_json, err, fail, open_workspace, quiet, show

app = commands()  # merged into `storyengine character`


@command(app, "train-lora")
def character_train_lora(
    handle: str = typer.Argument(..., metavar="HANDLE", help="The registered character to train on (its photos are the data)."),
    base: str = typer.Option(..., "--base", metavar="wan|ltx", help="Back-end whose model is trained."),
    model: Optional[str] = typer.Option(None, "--model", metavar="ID|DIR", help="Hub id or local folder (default: the back-end's default model)."),
    rank: int = typer.Option(16, "--rank", min=1, max=256, help="LoRA rank."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimiser steps."),
    lr: float = typer.Option(1e-4, "--lr", min=0.0, help="Learning rate (AdamW)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", min=16, help="Square training size in pixels (default 480 Wan, 512 LTX)."),
    trigger: Optional[str] = typer.Option(None, "--trigger", metavar="WORD", help="Word that names the character in prompts (default: the handle)."),
    weight: float = typer.Option(1.0, "--weight", min=0.0, max=2.0, help="Adapter weight used when shots load it."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from the newest checkpoint of the same settings."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds LoRA init, noise and timesteps."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:1, mps."),
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = typer.Option(
        "auto", "--dtype", help="auto: bfloat16 on CUDA, float32 on CPU."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a LoRA adapter on the character's photos (flow matching) and store it in the registry.

    Example: storyengine character train-lora mara --base wan --steps 500
    """
    from ..lora import train_character
    from ..registry import Registry

    try:
        ws = open_workspace(workspace)
        reg = Registry.open(ws)
        with _bar(handle, base, steps) as progress:
            meta = train_character(reg, ws, handle, base=base, model=model, trigger=trigger, weight=weight, rank=rank,
                                   steps=steps, lr=lr, resolution=resolution, checkpoint_every=checkpoint_every,
                                   resume=resume, seed=seed, device=device, dtype=dtype, progress=progress)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json(meta)
        return
    adapter = meta.get("adapter") or {}
    t = View(f"adapter: {handle}", [Col("field"), Col("value", "path")])
    for k, v in [("file", adapter.get("path", meta["path"])), ("sha256", meta["sha256"]),
                 ("base", f"{base} ({meta['base_model']})"), ("trigger", meta["trigger"]), ("rank", str(meta["rank"])),
                 ("steps", str(meta["steps"]) + (f" (resumed from {meta['resumed_from']})" if meta["resumed_from"] else "")),
                 ("loss", f"{meta['initial_loss']:.4f} → {meta['final_loss']:.4f}")]:
        t.add(k, v)
    show(t)


class _bar:
    """Training progress: a bar on a terminal, a line every 10 % when stderr is piped, nothing under --quiet."""

    def __init__(self, handle: str, base: str, steps: int) -> None:
        self.handle, self.base, self.steps = handle, base, steps
        self.bar = None
        self.next_line = 0
        self.t0 = time.monotonic()

    def __enter__(self):
        if not quiet() and err().is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), console=err(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(f"{self.handle}: loading {self.base}", total=self.steps)
        return self.progress

    def progress(self, step: int, total: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, description=f"{self.handle} on {self.base}: loss {loss:.4f}")
        elif not quiet() and step >= self.next_line:
            err().print(f"[{time.monotonic() - self.t0:6.1f}s] {self.handle} on {self.base}: step {step}/{total}, "
                        f"loss {loss:.4f}", markup=False, soft_wrap=True)
            self.next_line = step + max(1, total // 10)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
