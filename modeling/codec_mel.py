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
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from .code_vectors import summed_code_vectors
from .loading import StrictLoadingMixin
from .mel import LogMel, check_mel_fields


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
        griffin_lim_sharpening: Exponent that sharpens the inverted spectrum within each mel band
            before Griffin-Lim, keeping the bands' energies (:func:`~.mel.sharpen_within_bands`);
            1.0 is plain Griffin-Lim.
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
    griffin_lim_sharpening: float = 1.0

    def __post_init__(self, **kwargs) -> None:
        check_mel_fields(self)
        super().__post_init__(**kwargs)

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length


class EllaVMelCodecModel(StrictLoadingMixin, PreTrainedModel):
    """Residual k-means codec over log-mel frames (see the module docstring for what it is for).

    Fit it with :func:`ella_v_hf.processing.fit_mel_codec.fit_mel_codec`; a fresh instance has random codebooks.
    """

    config_class = EllaVMelCodecConfig
    main_input_name = "input_values"

    @classmethod
    def from_source(cls, source: str | None = None) -> EllaVMelCodecModel:
        """A fitted codec saved at ``source``; it has no default (``ella-v prepare --codec mel`` fits one)."""
        if source is None:
            raise ValueError("the mel codec has no default: `ella-v prepare --codec mel` fits one, or give --codec-model DIR")
        return cls.from_pretrained(source)

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
    def dequantize(
        self,
        audio_codes: torch.LongTensor,
        code_probabilities: torch.Tensor | None = None,
        first_code_probabilities: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Codes ``[B, K', T]`` (the first K' codebooks) -> log-mel ``[B, T, n_mels]``.

        ``code_probabilities`` ``[B, K' - 1, T, codebook_size]``: distributions over the codes of
        levels 2..K' (the NAR's), which then add their expected centroid; ``first_code_probabilities``
        ``[B, T, C_1]``: the first level likewise (the GAR's); see :mod:`.code_vectors`.
        """
        features = summed_code_vectors(self.codebooks, audio_codes.long(), code_probabilities, first_code_probabilities)
        return features * self.feature_std + self.feature_mean

    @torch.no_grad()
    def encode(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None, **kwargs) -> torch.LongTensor:
        """Waveform ``[B, 1, S]`` (at ``config.sampling_rate``) -> codes ``[B, K, ceil(S / hop)]``."""
        return self.quantize(self.normalized_features(input_values))

    @torch.no_grad()
    def to_waveform(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, T, n_mels]`` -> waveform ``[B, T * hop]`` by mel inversion and Griffin-Lim (the config's settings)."""
        return self.frontend.to_waveform(
            log_mel, self.config.griffin_lim_iters, self.config.griffin_lim_momentum, self.config.griffin_lim_sharpening
        )

    @torch.no_grad()
    def decode(
        self,
        audio_codes: torch.LongTensor,
        code_probabilities: torch.Tensor | None = None,
        first_code_probabilities: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Codes ``[B, K', T]`` -> waveform ``[B, 1, T * hop]`` by mel inversion and Griffin-Lim.

        ``code_probabilities``, ``first_code_probabilities``: as in :meth:`dequantize`.
        """
        log_mel = self.dequantize(audio_codes, code_probabilities, first_code_probabilities)  # [B, T, M]
        return self.to_waveform(log_mel)[:, None]

    def forward(self, input_values: torch.Tensor, **kwargs) -> torch.LongTensor:
        return self.encode(input_values)


__all__ = ["EllaVMelCodecConfig", "EllaVMelCodecModel"]
