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


def _waveform_stage(codec, log_mel: torch.Tensor) -> np.ndarray:
    """Log-mel ``[1, T, n_mels]`` -> float32 waveform ``[S]`` through ``codec``'s own waveform stage
    (what its ``decode`` ends with: its vocoder, or its mel inversion and Griffin-Lim settings)."""
    return codec.to_waveform(log_mel)[0].float().cpu().numpy()


@torch.no_grad()
def waveform_stage_ceiling(codec, waveform: np.ndarray, sampling_rate: int) -> np.ndarray | None:
    """The reference's own log-mel through ``codec``'s waveform stage (its vocoder, or mel inversion + Griffin-Lim):
    what a decoder that reproduced the log-mel exactly would give. ``None`` for a codec without
    such a stage (EnCodec decodes waveforms directly).

    Mono ``[S]`` (any rate) -> float32 waveform ``[S']`` at the codec's rate.
    """
    if getattr(codec, "frontend", None) is None or not hasattr(codec.config, "griffin_lim_iters"):
        return None
    audio = prepare_waveform(waveform, sampling_rate, codec.config.sampling_rate)
    return _waveform_stage(codec, codec.frontend(torch.from_numpy(audio)[None].to(codec.device)))  # log-mel [1, T, n_mels]


@torch.no_grad()
def unquantised_resynthesis(codec, waveform: np.ndarray, sampling_rate: int) -> np.ndarray | None:
    """The encoder's latents decoded without quantisation (a learned autoencoder codec's ceiling
    before any codebook); ``None`` for a codec without separate encoder latents and decoder.

    Mono ``[S]`` (any rate) -> float32 waveform ``[S']`` at the codec's rate.
    """
    if not all(hasattr(codec, name) for name in ("features", "latents", "decode_latents", "frontend")):
        return None
    audio = prepare_waveform(waveform, sampling_rate, codec.config.sampling_rate)
    latents = codec.latents(codec.features(torch.from_numpy(audio)[None, None].to(codec.device)))  # [1, T, codebook_dim]
    return _waveform_stage(codec, codec.decode_latents(latents))


__all__ = ["decode_codes", "encode_waveform", "unquantised_resynthesis", "waveform_stage_ceiling"]
