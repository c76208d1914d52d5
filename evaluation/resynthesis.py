"""Codec round trips for measurements: waveform -> codes -> waveform through any registered codec."""

from __future__ import annotations

import numpy as np
import torch

from ..processing.audio import prepare_waveform


@torch.no_grad()
def encode_waveform(codec, waveform: np.ndarray, sampling_rate: int) -> torch.LongTensor:
    """Mono waveform ``[S]`` (any rate) -> codes ``[K, T]`` of ``codec`` (a registered codec model)."""
    audio = prepare_waveform(waveform, sampling_rate, codec.config.sampling_rate)
    return codec.encode(torch.from_numpy(audio)[None, None].to(codec.device))[0].long().cpu()


@torch.no_grad()
def decode_codes(codec, codes: torch.LongTensor, first_probabilities: torch.Tensor | None = None) -> np.ndarray:
    """Codes ``[K', T]`` (the first K' codebooks) -> float32 waveform ``[S]`` at the codec's rate.

    ``first_probabilities`` ``[T, C_1]``: decode the first level from its expected vectors under
    these distributions (a generation's ``first_code_probabilities`` row) instead of its codes.
    """
    first = None if first_probabilities is None else first_probabilities[None].to(codec.device)  # [1, T, C_1]
    return codec.decode(codes[None].to(codec.device), first_code_probabilities=first)[0, 0].float().cpu().numpy()


__all__ = ["decode_codes", "encode_waveform"]
