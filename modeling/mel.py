"""Log-mel analysis and Griffin-Lim synthesis shared by the embedded codecs and the aligner.

Only torch and transformers are needed, so the file travels as remote code with a checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.audio_utils import mel_filter_bank


class LogMel(nn.Module):
    """Log-magnitude mel frames, one per ``hop_length`` samples: ``[B, S] -> [B, T, n_mels]`` with
    ``T = ceil(S / hop_length)``. Also the aligner's feature frontend."""

    def __init__(self, sampling_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        bank = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=f_min,
            max_frequency=f_max or sampling_rate / 2,
            sampling_rate=sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        # Derived from the config, never trained: kept out of the state dict, and made a tensor
        # lazily (a tensor built here would be a meta tensor under from_pretrained).
        self._bank_array = bank.astype("float32")  # [F, M]
        self._banks: dict[torch.device, torch.Tensor] = {}
        self._inverses: dict[torch.device, torch.Tensor] = {}

    def bank(self, device: torch.device) -> torch.Tensor:
        """The mel filterbank ``[F, M]`` on ``device``."""
        if device not in self._banks:
            self._banks[device] = torch.from_numpy(self._bank_array).to(device)
        return self._banks[device]

    def magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` -> STFT magnitude ``[B, T, F]``."""
        frames = math.ceil(waveform.shape[-1] / self.hop_length)
        waveform = F.pad(waveform, (0, frames * self.hop_length - waveform.shape[-1]))
        window = torch.hann_window(self.n_fft, device=waveform.device)
        spec = torch.stft(waveform.float(), self.n_fft, self.hop_length, window=window, center=True, return_complex=True)
        return spec.abs()[..., :frames].transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(self.magnitude(waveform) @ self.bank(waveform.device), min=1e-5))

    def to_waveform(self, log_mel: torch.Tensor, iterations: int, momentum: float, sharpening: float = 1.0) -> torch.Tensor:
        """Invert log-mel frames: ``[B, T, n_mels]`` -> waveform ``[B, T * hop_length]``.

        The mel magnitudes are mapped back to linear frequency with the filterbank's pseudo-inverse,
        sharpened within each band (:func:`sharpen_within_bands`; ``sharpening=1`` leaves them as
        they are) and the phase is estimated by fast Griffin-Lim.
        """
        device = log_mel.device
        if device not in self._inverses:
            self._inverses[device] = torch.linalg.pinv(self.bank(device))  # [M, F]
        mel = log_mel.float().exp()  # [B, T, M]
        magnitude = torch.clamp(mel @ self._inverses[device], min=0.0)  # [B, T, F]
        if sharpening != 1.0:
            magnitude = sharpen_within_bands(magnitude, mel, self.bank(device), sharpening)
        frames = magnitude.shape[1]
        shortest = self.n_fft // self.hop_length + 1  # the STFT's reflect padding needs this many
        if frames < shortest:  # e.g. a one-frame utterance: add silent frames, cut below
            magnitude = F.pad(magnitude, (0, 0, 0, shortest - frames))
        waveform = griffin_lim(magnitude.transpose(1, 2), self.n_fft, self.hop_length, iterations, momentum)
        length = frames * self.hop_length
        return F.pad(waveform, (0, max(0, length - waveform.shape[-1])))[:, :length]


def sharpen_within_bands(magnitude: torch.Tensor, mel: torch.Tensor, bank: torch.Tensor, exponent: float) -> torch.Tensor:
    """Sharpen a linear magnitude spectrum within the mel bands it came from, keeping each band's energy.

    The filterbank's pseudo-inverse spreads every band's energy smoothly over its bins, and
    Griffin-Lim turns that smear into noise. Raising the magnitudes to ``exponent`` makes the peaks
    within each band stand out; scaling each bin by the mean (over the bands that contain it) of
    ``mel / (sharpened @ bank)`` then restores the bands' energies, so the log-mel of the result stays
    close to ``mel``.

    Args:
        magnitude: Linear magnitudes ``[B, T, F]`` (non-negative), e.g. ``mel @ pinv(bank)`` clamped.
        mel: The mel magnitudes ``[B, T, M]`` to keep.
        bank: The mel filterbank ``[F, M]``.
        exponent: The sharpening exponent (1: unchanged; larger: peakier).

    Returns:
        The sharpened magnitudes ``[B, T, F]``.
    """
    sharpened = magnitude.pow(exponent)  # [B, T, F]
    ratio = mel / (sharpened @ bank).clamp(min=1e-10)  # [B, T, M]: each band's energy to restore
    share = bank / bank.sum(dim=1, keepdim=True).clamp(min=1e-10)  # [F, M]: each bin's bands, rows sum to 1
    return sharpened * (ratio @ share.T)  # [B, T, F]


def check_mel_fields(config) -> None:
    """Fill ``f_max`` (Nyquist when None) and check the log-mel fields of a codec configuration.

    Raises:
        ValueError: A hop length, frequency range or codebook count that cannot work.
    """
    if config.f_max is None:
        config.f_max = config.sampling_rate / 2
    if config.hop_length <= 0 or config.n_fft < config.hop_length:
        raise ValueError(f"Need 0 < hop_length <= n_fft, got hop_length={config.hop_length}, n_fft={config.n_fft}")
    if not 0 <= config.f_min < config.f_max <= config.sampling_rate / 2:
        raise ValueError(f"Need 0 <= f_min < f_max <= sampling_rate/2, got {config.f_min}, {config.f_max}")
    if config.griffin_lim_sharpening <= 0:
        raise ValueError(f"griffin_lim_sharpening must be positive, got {config.griffin_lim_sharpening}")
    if config.num_codebooks < 1 or config.codebook_size < 2:
        raise ValueError("num_codebooks must be >= 1 and codebook_size >= 2")


def griffin_lim(magnitude: torch.Tensor, n_fft: int, hop_length: int, iterations: int, momentum: float) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013): ``[B, F, T]`` magnitude -> ``[B, T * hop_length]`` waveform.

    Deterministic: the initial phase comes from a fixed seed.
    """
    window = torch.hann_window(n_fft, device=magnitude.device)
    length = magnitude.shape[-1] * hop_length
    generator = torch.Generator(device="cpu").manual_seed(0)
    angles = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=generator)).to(magnitude.device)
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        waveform = torch.istft(magnitude * angles, n_fft, hop_length, window=window, center=True, length=length)
        rebuilt = torch.stft(waveform, n_fft, hop_length, window=window, center=True, return_complex=True)[..., : magnitude.shape[-1]]
        accelerated = rebuilt - momentum / (1 + momentum) * previous
        angles = accelerated / accelerated.abs().clamp(min=1e-8)
        previous = rebuilt
    return torch.istft(magnitude * angles, n_fft, hop_length, window=window, center=True, length=length)


__all__ = ["LogMel", "check_mel_fields", "griffin_lim", "sharpen_within_bands"]
