"""A learned waveform stage for the mel codecs: log-mel frames -> STFT magnitude and phase -> ``torch.istft``.

Vocos (Siuzdak 2023) in miniature: a stack of ConvNeXt blocks at the mel frame rate predicts, per
frame, the log-magnitude and the phase of every STFT bin, and one inverse STFT makes the waveform.
Nothing runs at the sample rate but the ``istft``, so it costs a few convolutions per frame — far
less than 32 Griffin-Lim iterations of STFT and inverse STFT. Trained with ``ella-v train-vocoder``
(multi-resolution STFT and log-mel losses); Griffin-Lim stays available as the codec's other
waveform stage.

This file needs only torch, so it travels as remote code with a checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNeXtBlock(nn.Module):
    """Depthwise convolution, LayerNorm, pointwise MLP and a learned residual scale: ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, channels: int, intermediate_size: int, kernel_size: int = 7, layer_scale: float = 0.1) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.up = nn.Linear(channels, intermediate_size)
        self.act = nn.GELU()
        self.down = nn.Linear(intermediate_size, channels)
        self.scale = nn.Parameter(torch.full((channels,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x).transpose(1, 2)  # [B, T, C]
        y = self.down(self.act(self.up(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class IstftVocoder(nn.Module):
    """Log-mel ``[B, T, n_mels]`` (the codec's normalised features) -> waveform ``[B, T * hop_length]``.

    Args:
        n_mels: Mel bands of the input.
        hidden_size: Channels of the ConvNeXt stack.
        intermediate_size: Width of each block's pointwise MLP.
        num_layers: ConvNeXt blocks.
        n_fft: STFT size of the output (its window; ``n_fft // 2 + 1`` bins per frame).
        hop_length: Samples per input frame (the codec's mel hop).
    """

    def __init__(self, n_mels: int, hidden_size: int, intermediate_size: int, num_layers: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        if n_fft < hop_length or n_fft % 2:
            raise ValueError(f"The vocoder's n_fft must be even and >= hop_length ({hop_length}), got {n_fft}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.embed = nn.Conv1d(n_mels, hidden_size, 7, padding=3)
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(hidden_size, intermediate_size, layer_scale=1.0 / num_layers) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.head = nn.Linear(hidden_size, n_fft + 2)  # log-magnitude and phase of n_fft // 2 + 1 bins

    def spectrum(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, T, n_mels]`` -> complex STFT ``[B, n_fft // 2 + 1, T]``."""
        x = self.embed(features.transpose(1, 2))  # [B, C, T]
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        log_magnitude, phase = self.head(self.final_norm(x.transpose(1, 2))).float().chunk(2, dim=-1)  # [B, T, F] each
        magnitude = torch.exp(log_magnitude).clamp(max=1e2)
        return torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase)).transpose(1, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, T, n_mels]`` -> ``[B, T * hop_length]`` (frame ``t`` centred on sample ``t * hop_length``, as the analysis)."""
        frames = features.shape[1]
        shortest = self.n_fft // self.hop_length + 1  # the inverse STFT's overlap-add needs this many
        if frames < shortest:  # e.g. a one-frame utterance: repeat the last frame, cut below
            features = torch.cat([features, features[:, -1:].expand(-1, shortest - frames, -1)], dim=1)
        window = torch.hann_window(self.n_fft, device=features.device)
        waveform = torch.istft(self.spectrum(features), self.n_fft, self.hop_length, window=window, center=True,
                               length=features.shape[1] * self.hop_length)
        return waveform[:, : frames * self.hop_length]


__all__ = ["ConvNeXtBlock", "IstftVocoder"]
