"""The paper-size model on an accelerator: training throughput and MFU, and GAR inference speed against stock Llama.

    python -m ella_v_hf.evaluation.device_check --out device-check.json \
        [--device cuda] [--preset base] [--dtype bf16] [--train-steps 10] [--peak-tflops auto] \
        [--time-budget 420]

One script, meant to finish well inside 8 minutes on one GPU (``--time-budget`` seconds: parts left
when it is spent are reported as skipped, never guessed):

1. **Training** of the recipe's GAR and NAR (``training/configs/base-ella-v.json``: the ``base``
   preset, batches of ``max_tokens_per_batch`` tokens in 1,100-token rows, the shapes
   :mod:`.project_training` counts): float32 weights, AdamW, ``torch.autocast`` in ``--dtype``
   (what ``accelerate``'s ``mixed_precision="bf16"`` does), ``--train-steps`` timed steps after two
   warm-up steps. Reported: tokens/s, seconds per step, peak memory (``torch.cuda.max_memory_allocated``)
   and MFU = FLOPs per step (counted as :mod:`.project_training` counts them) / seconds per step / the device's dense
   peak for ``--dtype`` (``--peak-tflops``; ``auto`` knows A100, H100 and H200, otherwise it must be given).
2. **Inference** of the base GAR (random weights, ``--dtype`` weights) at batch 1 and 16 with the
   ELLA-V rule (top-p 0.9, a 24-phoneme text), against stock ``LlamaForCausalLM.generate`` of the
   same size drawing exactly as many tokens, the runs taking turns (best of ``--repeats``):
   tokens/s, the ratio, and the real-time factor at EnCodec's 75 frames/s (seconds of compute per
   second of audio generated).

On a CPU (``--device cpu --preset tiny --dtype float32``) the same script runs in seconds: that is
how it is tested. The JSON (``--out``) is what docs/performance.md's accelerator table cites.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList

from ..modeling import EllaVPhonemeAdvanceLogitsProcessor, build_gar_sequence
from ..training.trainer import TrainConfig
from .bench import _interleaved_best, stock_llama
from .project_training import RecipeBatch, gar_step, nar_step, recipe_models, step_flops

#: Dense (no sparsity) peak TFLOP/s by device name and autocast dtype.
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "float32": 67.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "float32": 67.0},  # SXM; PCIe: 756 / 51
    "A100": {"bf16": 312.0, "fp16": 312.0, "float32": 19.5},
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "float32": torch.float32}
#: EnCodec 24 kHz frames per second (the recipe's codec).
FRAME_RATE = 75.0


def peak_tflops(device: torch.device, dtype: str, given: str) -> float | None:
    """The stated peak (``given`` a number), or the known one for this device's name (``auto``)."""
    if given != "auto":
        return float(given)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[dtype]
    return None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_figures(model: torch.nn.Module, step: Callable[[], torch.Tensor], tokens: int, flops: float, steps: int,
                  device: torch.device, dtype: str, peak: float | None) -> dict[str, Any]:
    """Time ``steps`` AdamW steps of ``model`` (``step`` runs forward + backward on one batch of
    ``tokens`` tokens and ``flops`` FLOPs)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=DTYPES[dtype], enabled=dtype != "float32")

    def update() -> None:
        with autocast:
            step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    update()  # warm-up
    update()
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        update()
    _synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    figures = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_step": tokens,
        "seconds_per_step": round(seconds, 6),  # microseconds: a small model's step is a few milliseconds
        "tokens_per_second": round(tokens / seconds, 1),
        "flops_per_step": flops,
        "achieved_tflops": round(flops / seconds / 1e12, 2),
    }
    if device.type == "cuda":
        figures["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if peak:
        figures["mfu"] = round(flops / seconds / (peak * 1e12), 6)
    return figures


def inference_figures(gar, device: torch.device, dtype: str, batches: tuple[int, ...], repeats: int, phonemes: int = 24,
                      seed: int = 0, deadline: float | None = None) -> dict[str, Any]:
    """GAR generation with the ELLA-V rule vs stock Llama generate() of the same size, per batch size."""
    llama = stock_llama(gar.config).to(device=device, dtype=DTYPES[dtype]).eval()
    gar = gar.to(device=device, dtype=DTYPES[dtype]).eval()
    space, spec = gar.config.token_space, gar.config.layout_spec
    text = [(7 * i + 3) % gar.config.num_phonemes for i in range(phonemes)]
    prompt = build_gar_sequence(text, None, None, space, spec).input_ids
    cap = gar.config.max_frames_per_phone
    results: dict[str, Any] = {}
    for batch in batches:
        if deadline is not None and time.time() > deadline:
            results[str(batch)] = {"skipped": "time budget spent"}
            continue
        ids = torch.tensor([prompt] * batch, device=device)

        def ours(ids: torch.Tensor = ids) -> torch.Tensor:
            torch.manual_seed(seed)
            processors = LogitsProcessorList([EllaVPhonemeAdvanceLogitsProcessor(space, spec, cap)])
            return gar.generate(ids, logits_processor=processors, max_new_tokens=phonemes * (cap + 2) + 2, do_sample=True, top_p=0.9,
                                eos_token_id=space.EOS, pad_token_id=space.PAD)

        with torch.no_grad():
            out = ours()  # warm-up, and the tokens the stock run must match
            generated = out[:, len(prompt):]
            new_tokens = generated.shape[1]
            frames = int(space.acoustic_mask(generated).sum())

            def stock(ids: torch.Tensor = ids, new_tokens: int = new_tokens) -> torch.Tensor:
                return llama.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, top_p=0.9, pad_token_id=0)

            stock()  # warm-up
            best = _interleaved_best(repeats, {"ella_v": lambda: (ours(), _synchronize(device)),
                                               "llama": lambda: (stock(), _synchronize(device))})
        steps = batch * new_tokens
        audio_seconds = frames / FRAME_RATE
        results[str(batch)] = {
            "new_tokens_per_row": new_tokens,
            "acoustic_frames": frames,
            "ella_v_seconds": round(best["ella_v"], 6),
            "llama_seconds": round(best["llama"], 6),
            "ella_v_tokens_per_second": round(steps / best["ella_v"], 1),
            "llama_tokens_per_second": round(steps / best["llama"], 1),
            "ratio_vs_llama": round(best["llama"] / best["ella_v"], 3),
            "rtf": round(best["ella_v"] / max(audio_seconds, 1e-9), 6),  # over every row's audio
        }
    return results


def run_device_check(device: str = "cuda", preset: str = "base", dtype: str = "bf16", train_steps: int = 10, repeats: int = 3,
                     config_path: str | None = None, peak: str = "auto", time_budget: float = 420.0,
                     overrides: dict | None = None, batches: tuple[int, ...] = (1, 16),
                     max_tokens_per_batch: int | None = None, phonemes: int = 24) -> dict[str, Any]:
    """Run the check (see the module docstring) and return its figures.

    Args:
        device: ``"cuda"`` (or ``"cuda:N"``) or ``"cpu"``.
        preset: Model dimensions (:data:`~ella_v_hf.presets.PRESETS`), replacing the recipe's.
        dtype: Autocast dtype of training and weight dtype of inference (``bf16``, ``fp16``, ``float32``).
        train_steps: Timed training steps per model (after two warm-up steps).
        repeats: Timed generations per run (the best is kept).
        config_path: A training recipe (default: the packaged ``base-ella-v.json``).
        peak: The device's dense peak TFLOP/s for ``dtype`` as a number, or ``"auto"``.
        time_budget: Seconds; parts not started when it is spent are reported as skipped.
        overrides: Dimension overrides on top of the preset (tests use tiny ones).
        batches: Batch sizes of the inference figures.
        max_tokens_per_batch: Overrides the recipe's training batch (tokens).
        phonemes: Phonemes of the inference text.
    """
    start = time.time()
    deadline = start + time_budget
    target = torch.device(device)
    if config_path is None:
        config_path = str(importlib.resources.files("ella_v_hf.training") / "configs" / "base-ella-v.json")
    config = TrainConfig.from_file(config_path)
    config.preset = preset
    if max_tokens_per_batch:
        config.max_tokens_per_batch = max_tokens_per_batch
    if overrides:
        config.model_overrides = {**config.model_overrides, **overrides}
    peak_value = peak_tflops(target, dtype, peak)
    torch.manual_seed(0)
    with target:
        gar, nar, batch = recipe_models(config)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(target) if target.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "preset": preset,
        "dtype": dtype,
        "config": config_path,
        "peak_tflops": peak_value,
        "batch": batch.__dict__,
        "training": {},
    }
    # Counted on the meta device, as the projection counts them: the same figure on every device
    # (on a CPU the flop counter does not see the fused attention kernel).
    flops = step_flops(config)
    ids = _gar_ids(batch, gar, target)  # [rows, tokens]
    codes, phoneme_ids = _nar_inputs(batch, nar, target)  # [rows, K, frames], [rows, phones]
    steps = {"gar": (gar, partial(gar_step, gar, batch, ids), batch.rows * batch.tokens),
             "nar": (nar, partial(nar_step, nar, batch, codes, phoneme_ids), batch.rows * batch.frames)}
    for name, (model, step, tokens) in steps.items():
        if time.time() > deadline:
            results["training"][name] = {"skipped": "time budget spent"}
            continue
        model.train()
        results["training"][name] = train_figures(model, step, tokens, flops[name], train_steps, target, dtype, peak_value)
        model.zero_grad(set_to_none=True)
    del steps, nar, codes, phoneme_ids, ids
    if target.type == "cuda":
        torch.cuda.empty_cache()
    results["inference"] = inference_figures(gar, target, dtype, batches, repeats, phonemes=phonemes, deadline=deadline)
    results["seconds"] = round(time.time() - start, 1)
    return results


def _gar_ids(batch: RecipeBatch, gar, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    space = gar.config.token_space
    return torch.randint(space.acoustic_offset, space.vocab_size, (batch.rows, batch.tokens), generator=generator).to(device)


def _nar_inputs(batch: RecipeBatch, nar, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, nar.config.codebook_size, (batch.rows, batch.num_codebooks, batch.frames), generator=generator)
    phonemes = torch.randint(0, nar.config.num_phonemes, (batch.rows, batch.phones), generator=generator)
    return codes.to(device), phonemes.to(device)


def markdown(results: dict[str, Any]) -> str:
    lines = [f"{results['device']}, {results['preset']} preset, {results['dtype']}, torch {results['torch']} ({results['seconds']} s)", "",
             "| figure | value |", "|---|---|"]
    for name, figures in results["training"].items():
        if "skipped" in figures:
            lines.append(f"| {name.upper()} training | skipped: {figures['skipped']} |")
            continue
        mfu = f", MFU {figures['mfu']:.1%}" if "mfu" in figures else ""
        memory = f", peak {figures['peak_memory_gib']} GiB" if "peak_memory_gib" in figures else ""
        lines.append(f"| {name.upper()} training, tokens/s | {figures['tokens_per_second']:,.0f} ({figures['achieved_tflops']} TFLOP/s{mfu}{memory}) |")
    for size, figures in results["inference"].items():
        if "skipped" in figures:
            lines.append(f"| GAR inference, batch {size} | skipped: {figures['skipped']} |")
            continue
        lines.append(f"| GAR inference, batch {size}, tokens/s (vs stock Llama) | {figures['ella_v_tokens_per_second']:,.0f} vs "
                     f"{figures['llama_tokens_per_second']:,.0f} ({figures['ratio_vs_llama']} x); RTF {figures['rtf']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="write the figures to this JSON file")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--config", default=None, help="a training recipe (default: training/configs/base-ella-v.json)")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", default="auto", help="the device's dense peak for --dtype, or auto (A100, H100, H200)")
    parser.add_argument("--max-tokens-per-batch", type=int, default=None, help="override the recipe's training batch (e.g. on a CPU)")
    parser.add_argument("--time-budget", type=float, default=420.0, help="seconds; parts left when it is spent are skipped")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run_device_check(args.device, args.preset, args.dtype, args.train_steps, args.repeats, args.config, args.peak_tflops,
                               args.time_budget, max_tokens_per_batch=args.max_tokens_per_batch)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(json.dumps(results, indent=1) if args.json else markdown(results))


if __name__ == "__main__":
    main()
