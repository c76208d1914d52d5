"""Adversarial training of the vocoder: a multi-resolution spectrogram discriminator (UnivNet, Vocos)
with hinge losses and feature matching. Training only: nothing here is saved with a model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

#: One discriminator's output: its score map and the feature maps it went through.
Judgement = tuple[torch.Tensor, list[torch.Tensor]]


class SpectrogramDiscriminator(nn.Module):
    """2-D convolutions over one STFT resolution's log magnitude: waveform ``[B, S]`` -> score map and features."""

    def __init__(self, n_fft: int, hop_length: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4))),
            *[weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))) for _ in range(3)],
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, waveform: torch.Tensor) -> Judgement:
        window = torch.hann_window(self.n_fft, device=waveform.device)
        spectrum = torch.stft(waveform.float(), self.n_fft, self.hop_length, window=window, center=True, return_complex=True)
        x = spectrum.abs().clamp(min=1e-5).log().transpose(1, 2)[:, None]  # [B, 1, T, F]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.post(x), features


class MultiResolutionDiscriminator(nn.Module):
    """One :class:`SpectrogramDiscriminator` per ``(n_fft, hop_length)`` resolution."""

    def __init__(self, resolutions: list, channels: int = 32) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(SpectrogramDiscriminator(n_fft, hop, channels) for n_fft, hop in resolutions)

    def forward(self, waveform: torch.Tensor) -> list[Judgement]:
        return [discriminator(waveform) for discriminator in self.discriminators]


def discriminator_loss(real: list[Judgement], fake: list[Judgement]) -> torch.Tensor:
    """Hinge loss of the discriminators: real scores above 1, generated ones below -1."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake)) / len(real)


def generator_loss(fake: list[Judgement]) -> torch.Tensor:
    """Hinge loss of the generator: its outputs' scores above 1."""
    return sum(F.relu(1 - f).mean() for f, _ in fake) / len(fake)


def feature_matching_loss(real: list[Judgement], fake: list[Judgement]) -> torch.Tensor:
    """Mean L1 distance of the discriminators' feature maps, real (constants) against generated."""
    distances = [F.l1_loss(f, r.detach()) for (_, real_features), (_, fake_features) in zip(real, fake)
                 for r, f in zip(real_features, fake_features)]
    return sum(distances) / len(distances)


__all__ = ["MultiResolutionDiscriminator", "SpectrogramDiscriminator", "discriminator_loss", "feature_matching_loss", "generator_loss"]
