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
def decode_codes(codec, codes: torch.LongTensor) -> np.ndarray:
    """Codes ``[K', T]`` (the first K' codebooks) -> float32 waveform ``[S]`` at the codec's rate."""
    return codec.decode(codes[None].to(codec.device))[0, 0].float().cpu().numpy()


__all__ = ["decode_codes", "encode_waveform"]
