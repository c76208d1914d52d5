"""What a training recipe costs on GPUs, from the FLOPs of one of its steps.

    python -m ella_v_hf.evaluation.project_training --config training/configs/base-ella-v.json \
        [--peak-tflops 312] [--mfu 0.4] [--num-phonemes 80] [--codebook-size 1024] [--json]

The GAR's and the NAR's forward and backward on one batch of the recipe's ``max_tokens_per_batch``
tokens are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no
compute, no memory: the count is exact for the model's operators, attention included). The
projection is ``FLOPs per step x steps / (peak FLOP/s x MFU)``: the stated peak (A100 bf16 dense:
312 TFLOP/s by default) and an assumed model-FLOPs utilisation (0.4 by default, typical of a
well-fed DDP run of a model this size); both are printed with the result, so the figure is only
as good as they are; a real run's tokens/s in its ``log.jsonl`` gives the measured MFU.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..modeling import EllaVConfig, EllaVForCausalLM, EllaVNARConfig, EllaVNARModel
from ..presets import preset
from ..training.trainer import TrainConfig

#: A100 bf16 dense peak (TFLOP/s).
A100_BF16_TFLOPS = 312.0


@dataclass(frozen=True)
class RecipeBatch:
    """The shapes of one training batch of a recipe: ``rows`` GAR rows of ``tokens`` tokens, and the
    NAR's rows of ``frames`` frames and ``phones`` phonemes."""

    rows: int
    tokens: int
    frames: int
    phones: int
    num_codebooks: int


def recipe_models(config: TrainConfig, num_phonemes: int = 80, codebook_size: int = 1024, num_codebooks: int = 8,
                  phonemes_per_frame: float = 0.2, sequence_tokens: int = 1100) -> tuple[EllaVForCausalLM, EllaVNARModel, RecipeBatch]:
    """The recipe's GAR and NAR (random weights, on the current default device: ``with
    torch.device("meta")`` builds them without memory) and the shapes of one of its batches:
    ``max_tokens_per_batch`` GAR tokens in rows of ``sequence_tokens`` (1,100: a 10 s utterance at
    75 Hz; a phoneme per five frames, as speech has about 15 phonemes per second)."""
    dims = {**preset(config.preset), **config.model_overrides}
    shared = dict(num_phonemes=num_phonemes, codebook_size=codebook_size, num_codebooks=num_codebooks, **dims)
    rows = max(1, config.max_tokens_per_batch // sequence_tokens)
    frames = int(sequence_tokens / (1 + 3 * phonemes_per_frame))  # prefix, in-sequence phonemes and EOPs besides the frames
    phones = max(1, int(frames * phonemes_per_frame))
    gar = EllaVForCausalLM(EllaVConfig(layout=config.layout, max_position_embeddings=max(4096, sequence_tokens + 16), **shared))
    nar = EllaVNARModel(EllaVNARConfig(max_position_embeddings=max(4096, frames + phones + 16), **shared))
    return gar, nar, RecipeBatch(rows, sequence_tokens, frames, phones, num_codebooks)


def gar_step(gar: EllaVForCausalLM, batch: RecipeBatch, ids: torch.Tensor | None = None) -> torch.Tensor:
    """Forward and backward of the GAR on one batch (``ids`` ``[rows, tokens]``; zeros by default); returns the loss."""
    if ids is None:
        ids = torch.zeros(batch.rows, batch.tokens, dtype=torch.long)
    loss = gar(ids, labels=ids).loss
    loss.backward()
    return loss


def nar_step(nar: EllaVNARModel, batch: RecipeBatch, codes: torch.Tensor | None = None, phonemes: torch.Tensor | None = None) -> torch.Tensor:
    """Forward and backward of the NAR on one batch (``codes`` ``[rows, K, frames]``, ``phonemes``
    ``[rows, phones]``; zeros by default), predicting the second codebook; returns the loss."""
    if codes is None:
        codes = torch.zeros(batch.rows, batch.num_codebooks, batch.frames, dtype=torch.long)
    if phonemes is None:
        phonemes = torch.zeros(batch.rows, batch.phones, dtype=torch.long)
    index = torch.ones(batch.rows, dtype=torch.long, device=codes.device)
    loss = nar(phoneme_ids=phonemes, codes=codes, codebook_index=index, labels=codes[:, 1]).loss
    loss.backward()
    return loss


def step_flops(config: TrainConfig, **model: Any) -> dict[str, float]:
    """FLOPs of one training step (forward + backward) of the recipe's GAR and NAR on one batch
    (:func:`recipe_models`; ``model`` are its keyword arguments), counted on the meta device."""
    result = {}
    with torch.device("meta"):
        gar, nar, batch = recipe_models(config, **model)
        counter = FlopCounterMode(display=False)
        with counter:
            gar_step(gar, batch)
        result["gar"] = float(counter.get_total_flops())
        counter = FlopCounterMode(display=False)
        with counter:
            nar_step(nar, batch)
        result["nar"] = float(counter.get_total_flops())
    if config.stage == "gar":
        result["nar"] = 0.0
    elif config.stage == "nar":
        result["gar"] = 0.0
    result["total"] = result["gar"] + result["nar"]
    return result


def project(config: TrainConfig, peak_tflops: float = A100_BF16_TFLOPS, mfu: float = 0.4, processes: int = 1,
            **model: Any) -> dict[str, Any]:
    """GPU-hours of ``config``'s whole schedule: ``max_steps`` steps, each one batch on each of ``processes`` GPUs."""
    flops = step_flops(config, **model)
    total = flops["total"] * config.max_steps * processes
    hours = total / (peak_tflops * 1e12 * mfu) / 3600
    return {
        "preset": config.preset, "layout": config.layout, "stage": config.stage, "max_steps": config.max_steps,
        "processes": processes, "tokens_per_batch": config.max_tokens_per_batch, "flops_per_batch": flops, "total_flops": total,
        "assumed_peak_tflops": peak_tflops, "assumed_mfu": mfu, "gpu_hours": round(hours, 1),
        "wall_hours": round(hours / processes, 1), "tokens": config.max_steps * processes * config.max_tokens_per_batch,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--peak-tflops", type=float, default=A100_BF16_TFLOPS)
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--processes", type=int, default=1, help="GPUs of the DDP run (a step is one batch on each)")
    parser.add_argument("--num-phonemes", type=int, default=80)
    parser.add_argument("--codebook-size", type=int, default=1024)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = project(TrainConfig.from_file(args.config), args.peak_tflops, args.mfu, args.processes, num_phonemes=args.num_phonemes,
                     codebook_size=args.codebook_size)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    per_batch = result["flops_per_batch"]
    print(f"{args.config}: {result['max_steps']} steps x {result['processes']} GPU(s) x {result['tokens_per_batch']} tokens "
          f"({result['tokens'] / 1e9:.1f} G tokens)")
    print(f"  FLOPs per batch: GAR {per_batch['gar'] / 1e12:.1f} T, NAR {per_batch['nar'] / 1e12:.1f} T; "
          f"schedule {result['total_flops'] / 1e18:.1f} EFLOP")
    print(f"  at {result['assumed_peak_tflops']:g} TFLOP/s peak and {result['assumed_mfu']:.0%} MFU (assumed): "
          f"{result['gpu_hours']} GPU-hours ({result['wall_hours']} h on {result['processes']} GPU(s))")


if __name__ == "__main__":
    main()
