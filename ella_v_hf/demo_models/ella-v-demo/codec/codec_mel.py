"""The embedded codec: log-mel frames quantised by residual k-means codebooks, decoded by Griffin-Lim.

It exists for offline and CPU-scale work (no neural codec weights are needed, it is fitted on
the training corpus in seconds, and it ships inside the checkpoint). It is far below EnCodec in
quality: use EnCodec (``facebook/encodec_24khz``) for anything that is not a CPU demo.

Its ``encode`` / ``decode`` are shaped like transformers' ``EncodecModel``'s:
``encode(input_values [B, 1, S]) -> audio_codes [B, K, T]``, ``decode(audio_codes) -> audio_values [B, 1, T * hop]``.
This file only needs torch and transformers, so it travels as remote code with a checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.audio_utils import mel_filter_bank


class EllaVMelCodecConfig(PreTrainedConfig):
    """Configuration of :class:`EllaVMelCodecModel`.

    Args:
        sampling_rate: Audio sampling rate in Hz.
        n_fft: STFT size.
        hop_length: Samples per codec frame (frame rate = sampling_rate / hop_length).
        n_mels: Mel bands.
        f_min / f_max: Mel range in Hz (``f_max=None`` = Nyquist).
        num_codebooks: Residual quantiser depth K.
        codebook_size: Codes per codebook.
        griffin_lim_iters: Griffin-Lim iterations in ``decode``.
        griffin_lim_momentum: Fast Griffin-Lim momentum (0 = classic Griffin-Lim).
    """

    model_type = "ella_v_mel_codec"

    sampling_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    num_codebooks: int = 8
    codebook_size: int = 256
    griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99

    def __post_init__(self, **kwargs) -> None:
        if self.f_max is None:
            self.f_max = self.sampling_rate / 2
        if self.hop_length <= 0 or self.n_fft < self.hop_length:
            raise ValueError(f"Need 0 < hop_length <= n_fft, got hop_length={self.hop_length}, n_fft={self.n_fft}")
        if not 0 <= self.f_min < self.f_max <= self.sampling_rate / 2:
            raise ValueError(f"Need 0 <= f_min < f_max <= sampling_rate/2, got {self.f_min}, {self.f_max}")
        if self.num_codebooks < 1 or self.codebook_size < 2:
            raise ValueError("num_codebooks must be >= 1 and codebook_size >= 2")
        super().__post_init__(**kwargs)

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length


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


class EllaVMelCodecModel(PreTrainedModel):
    """Residual k-means codec over log-mel frames (see the module docstring for what it is for).

    Fit it with ``ella_v_hf.processing.fit_mel_codec``; a fresh instance has random codebooks.
    """

    config_class = EllaVMelCodecConfig
    main_input_name = "input_values"

    def __init__(self, config: EllaVMelCodecConfig) -> None:
        super().__init__(config)
        self.frontend = LogMel(config.sampling_rate, config.n_fft, config.hop_length, config.n_mels, config.f_min, config.f_max)
        self.codebooks = nn.Parameter(torch.zeros(config.num_codebooks, config.codebook_size, config.n_mels), requires_grad=False)
        self.feature_mean = nn.Parameter(torch.zeros(config.n_mels), requires_grad=False)
        self.feature_std = nn.Parameter(torch.ones(config.n_mels), requires_grad=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is self:
            with torch.no_grad():
                self.codebooks.normal_(0.0, 1.0 / math.sqrt(self.config.num_codebooks))
                self.feature_mean.zero_()
                self.feature_std.fill_(1.0)

    def normalized_features(self, input_values: torch.Tensor) -> torch.Tensor:
        """``[B, 1, S]`` or ``[B, S]`` -> normalised log-mel ``[B, T, n_mels]``."""
        if input_values.dim() == 3:
            input_values = input_values[:, 0]
        return (self.frontend(input_values) - self.feature_mean) / self.feature_std

    @torch.no_grad()
    def quantize(self, features: torch.Tensor) -> torch.LongTensor:
        """Residual nearest-centroid search: ``[B, T, n_mels]`` -> codes ``[B, K, T]``."""
        residual = features.float()
        codes = []
        for codebook in self.codebooks:  # [C, M]
            distances = (residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ codebook.T + codebook.pow(2).sum(-1))
            index = distances.argmin(-1)  # [B, T]
            residual = residual - codebook[index]
            codes.append(index)
        return torch.stack(codes, dim=1)

    @torch.no_grad()
    def dequantize(self, audio_codes: torch.LongTensor) -> torch.Tensor:
        """Codes ``[B, K', T]`` (the first K' codebooks) -> log-mel ``[B, T, n_mels]``."""
        features = sum(self.codebooks[k][audio_codes[:, k]] for k in range(audio_codes.shape[1]))
        return features * self.feature_std + self.feature_mean

    @torch.no_grad()
    def encode(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None, **kwargs) -> torch.LongTensor:
        """Waveform ``[B, 1, S]`` (at ``config.sampling_rate``) -> codes ``[B, K, ceil(S / hop)]``."""
        return self.quantize(self.normalized_features(input_values))

    @torch.no_grad()
    def decode(self, audio_codes: torch.LongTensor, **kwargs) -> torch.Tensor:
        """Codes ``[B, K, T]`` -> waveform ``[B, 1, T * hop]`` by mel inversion and Griffin-Lim."""
        log_mel = self.dequantize(audio_codes)  # [B, T, M]
        bank = self.frontend.bank(log_mel.device)  # [F, M]
        magnitude = torch.clamp(log_mel.exp() @ torch.linalg.pinv(bank), min=0.0)  # [B, T, F]
        shortest = self.config.n_fft // self.config.hop_length + 1  # the STFT's reflect padding needs this many
        if magnitude.shape[1] < shortest:  # e.g. a one-frame utterance: add silent frames, cut below
            magnitude = F.pad(magnitude, (0, 0, 0, shortest - magnitude.shape[1]))
        waveform = self._griffin_lim(magnitude.transpose(1, 2))  # [B, S']
        length = audio_codes.shape[-1] * self.config.hop_length
        return F.pad(waveform, (0, max(0, length - waveform.shape[-1])))[:, None, :length]

    def _griffin_lim(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Fast Griffin-Lim (Perraudin et al. 2013): ``[B, F, T]`` magnitude -> ``[B, S]`` waveform."""
        n_fft, hop = self.config.n_fft, self.config.hop_length
        window = torch.hann_window(n_fft, device=magnitude.device)
        length = magnitude.shape[-1] * hop
        generator = torch.Generator(device="cpu").manual_seed(0)  # deterministic decoding
        angles = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=generator)).to(magnitude.device)
        previous = torch.zeros_like(angles)
        for _ in range(self.config.griffin_lim_iters):
            waveform = torch.istft(magnitude * angles, n_fft, hop, window=window, center=True, length=length)
            rebuilt = torch.stft(waveform, n_fft, hop, window=window, center=True, return_complex=True)[..., : magnitude.shape[-1]]
            accelerated = rebuilt - self.config.griffin_lim_momentum / (1 + self.config.griffin_lim_momentum) * previous
            angles = accelerated / accelerated.abs().clamp(min=1e-8)
            previous = rebuilt
        return torch.istft(magnitude * angles, n_fft, hop, window=window, center=True, length=length)

    def forward(self, input_values: torch.Tensor, **kwargs) -> torch.LongTensor:
        return self.encode(input_values)


EllaVMelCodecConfig.register_for_auto_class()
EllaVMelCodecModel.register_for_auto_class("AutoModel")

__all__ = ["EllaVMelCodecConfig", "EllaVMelCodecModel", "LogMel"]
