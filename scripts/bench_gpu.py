"""Real-size Wan 1.3B (VACE) and LTX 2B on a CUDA card: the back-end against the stock diffusers call.

Builds each architecture at its real size from the configs in ``storyengine.backends.memory``
(random weights: the real compute and memory cost, nothing downloaded), renders one 480p
81-frame shot through the storyengine back-end (``timing: plan``, so both sides generate the
same 81 frames) and calls the same pipeline directly with the same keyword arguments, and prints
per model: seconds for each, the ratio (back-end / stock) and the peak VRAM of each, next to the
meta-device estimate. The text encoder is a one-layer T5 of the real width (its cost is not what
is measured; a 5.7B random UMT5 would only slow the set-up).

Without CUDA it says so and exits 0.

    python scripts/bench_gpu.py [--steps 4] [--models wan-vace,ltx] [--offload none]
"""

from __future__ import annotations

import argparse
import string
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tokenizer():
    from transformers import T5Tokenizer

    pieces = ["<pad>", "</s>", "<unk>", "▁"] + list(string.ascii_lowercase + string.digits)
    return T5Tokenizer(vocab=[(p, 0.0 if i < 3 else -1.0 - i * 0.01) for i, p in enumerate(pieces)], extra_ids=0)


def on_gpu(module, dtype):
    """Materialise a meta-built module on the GPU with small random weights (no CPU copy)."""
    import torch

    module = module.to_empty(device="cuda")
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.02)
        for b in module.buffers():
            if b.is_floating_point():
                b.normal_(0.0, 0.02)
    return module.to(dtype)


def build(name: str, dtype):
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    from storyengine.backends import memory

    with init_empty_weights():
        text = transformers.T5EncoderModel(transformers.T5Config(**{**memory.T5_V1_1_XXL, "num_layers": 1, "vocab_size": 48}))
        if name == "wan-vace":
            transformer = diffusers.WanVACETransformer3DModel.from_config(memory.WAN_VACE_1_3B)
            vae = diffusers.AutoencoderKLWan()
        else:
            transformer = diffusers.LTXVideoTransformer3DModel()
            vae = diffusers.AutoencoderKLLTXVideo()
    parts = dict(text_encoder=on_gpu(text, dtype), transformer=on_gpu(transformer, dtype), vae=on_gpu(vae, dtype),
                 tokenizer=tokenizer())
    if name == "wan-vace":
        return diffusers.WanVACEPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), **parts)
    return diffusers.LTXImageToVideoPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), **parts)


def timed(fn):
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t, torch.cuda.max_memory_allocated() / 2**30


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--models", default="wan-vace,ltx")
    ap.add_argument("--offload", default="none", help="none only: the pipelines are built on the GPU")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; skipped (run it on a GPU machine)")
        return 0
    from PIL import Image

    from storyengine.plugins import backend_class
    from storyengine.specs import CharacterRef, ShotPlan

    dtype = torch.bfloat16
    width, height, frames = 832, 480, 81
    print(f"device: {torch.cuda.get_device_name()}  {width}x{height}, {frames} frames, {args.steps} steps, bf16")
    print(f"{'model':10} {'stock s':>8} {'ours s':>8} {'ratio':>6} {'stock GiB':>10} {'ours GiB':>9} {'estimate none':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp) / "still.png"
        Image.new("RGB", (width, height), (120, 110, 100)).save(still)
        for name in args.models.split(","):
            pipe = build(name, dtype)
            pipe.set_progress_bar_config(disable=True)
            cls = backend_class(name)
            opts = {"steps": args.steps, "timing": "plan", "offload": args.offload, "max_sequence_length": 64}
            if name == "wan-vace":
                opts["reference_images"] = 0
            backend = cls(opts, pipeline=pipe)
            plan = ShotPlan(series="b", episode_id="e", shot_id="s", index=0, still=str(still),
                            characters=[CharacterRef(handle="x", name="X", kind="person")], prompt="a person walks",
                            seed=1, fps=16, width=width, height=height, num_frames=frames, duration=frames / 16,
                            min_frames=1, backend=name)
            kwargs, _ = backend.prepare_inputs(plan)
            backend.generate(plan)  # warm-up (kernels, allocator)
            _, stock_s, stock_gib = timed(lambda: pipe(**kwargs))
            _, ours_s, ours_gib = timed(lambda: list(backend.generate(plan).frames))
            estimate = cls.estimate_gib(cls.Options(), "none")
            print(f"{name:10} {stock_s:8.1f} {ours_s:8.1f} {ours_s / stock_s:6.2f} {stock_gib:10.1f} {ours_gib:9.1f} {estimate:14.1f}")
            del pipe, backend
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
