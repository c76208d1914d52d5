"""Codecs behind one small interface.

``encode(waveform, sampling_rate) -> codes [K, T]`` (mono-mixed and resampled as needed),
``decode(codes [K, T]) -> waveform [S]`` (float32 at ``sampling_rate``), plus ``sampling_rate``,
``frame_rate``, ``num_codebooks`` and ``codebook_size``.

- :class:`EncodecCodec`: the paper's codec, transformers' ``EncodecModel`` (``facebook/encodec_24khz``,
  6 kbps = 8 codebooks of 1024 at 75 Hz).
- :class:`MelCodec`: the embedded offline codec (:class:`~ella_v_hf.modeling.EllaVMelCodecModel`),
  fitted on a corpus with :func:`fit_mel_codec`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from .codec_mel import EllaVMelCodecConfig, EllaVMelCodecModel
from .audio import prepare_waveform


class AudioCodec:
    """Common interface of the codecs (see the module docstring)."""

    sampling_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int

    def encode(self, waveform: np.ndarray | torch.Tensor, sampling_rate: int) -> torch.LongTensor:
        """Waveform ``[S]`` / ``[S, C]`` at ``sampling_rate`` -> codes ``[K, T]``."""
        raise NotImplementedError

    def decode(self, codes: torch.LongTensor) -> np.ndarray:
        """Codes ``[K, T]`` -> float32 waveform ``[S]`` at ``self.sampling_rate``."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """Codec frames for ``num_samples`` samples at ``sampling_rate``."""
        return math.ceil(num_samples * self.frame_rate / self.sampling_rate)

    def _input(self, waveform: np.ndarray | torch.Tensor, sampling_rate: int) -> torch.Tensor:
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        mono = prepare_waveform(waveform, sampling_rate, self.sampling_rate)
        return torch.from_numpy(mono)[None, None]  # [1, 1, S]


class MelCodec(AudioCodec):
    """The embedded log-mel residual k-means codec (offline, CPU-scale; see its model docstring)."""

    def __init__(self, model: EllaVMelCodecModel) -> None:
        self.model = model.eval()
        config = model.config
        self.sampling_rate = config.sampling_rate
        self.frame_rate = config.frame_rate
        self.num_codebooks = config.num_codebooks
        self.codebook_size = config.codebook_size

    @classmethod
    def from_pretrained(cls, path: str) -> MelCodec:
        return cls(EllaVMelCodecModel.from_pretrained(path))

    def save_pretrained(self, path: str) -> None:
        self.model.save_pretrained(path)

    def encode(self, waveform, sampling_rate: int) -> torch.LongTensor:
        return self.model.encode(self._input(waveform, sampling_rate))[0]

    def decode(self, codes: torch.LongTensor) -> np.ndarray:
        return self.model.decode(codes[None].long())[0, 0].numpy()


class EncodecCodec(AudioCodec):
    """EnCodec through transformers' ``EncodecModel``.

    Args:
        model: An ``EncodecModel`` (e.g. ``EncodecModel.from_pretrained("facebook/encodec_24khz")``).
        bandwidth: Target bandwidth in kbps (6.0 = 8 codebooks at 24 kHz, the paper's setting).
    """

    def __init__(self, model, bandwidth: float = 6.0) -> None:
        config = model.config
        if bandwidth not in config.target_bandwidths:
            raise ValueError(f"bandwidth {bandwidth} not in the model's target_bandwidths {config.target_bandwidths}")
        self.model = model.eval()
        self.bandwidth = bandwidth
        self.sampling_rate = config.sampling_rate
        self.frame_rate = config.frame_rate
        self.codebook_size = config.codebook_size
        self.num_codebooks = int(bandwidth * 1000 / (config.frame_rate * math.log2(config.codebook_size)))

    @classmethod
    def from_pretrained(cls, name_or_path: str = "facebook/encodec_24khz", bandwidth: float = 6.0, **kwargs) -> EncodecCodec:
        from transformers import EncodecModel

        return cls(EncodecModel.from_pretrained(name_or_path, **kwargs), bandwidth)

    @torch.no_grad()
    def encode(self, waveform, sampling_rate: int) -> torch.LongTensor:
        inputs = self._input(waveform, sampling_rate)
        out = self.model.encode(inputs, bandwidth=self.bandwidth)
        codes = out.audio_codes  # [chunks, B, K, T] (one chunk for the 24 kHz model)
        return codes[0, 0]

    @torch.no_grad()
    def decode(self, codes: torch.LongTensor) -> np.ndarray:
        audio = self.model.decode(codes[None, None].long(), [None]).audio_values  # [1, 1, S]
        return audio[0, 0].float().numpy()


def fit_mel_codec(
    waveforms: Iterable[tuple[np.ndarray, int]],
    config: EllaVMelCodecConfig | None = None,
    max_frames: int = 200_000,
    seed: int = 0,
    progress: bool = True,
) -> EllaVMelCodecModel:
    """Fit the embedded codec's normalisation and residual k-means codebooks on a corpus.

    Args:
        waveforms: ``(waveform, sampling_rate)`` pairs (resampled to ``config.sampling_rate``).
        config: Codec configuration (default: 16 kHz, 80 mels, hop 320 = 50 Hz, 8 x 256).
        max_frames: Frames sampled for fitting (uniformly at random when the corpus has more).
        seed: Seed of the sampling and of k-means.
        progress: Show progress bars.

    Returns:
        A fitted :class:`~ella_v_hf.modeling.EllaVMelCodecModel`.
    """
    from sklearn.cluster import MiniBatchKMeans

    config = config or EllaVMelCodecConfig()
    model = EllaVMelCodecModel(config).eval()
    features = []
    with torch.no_grad():
        for waveform, rate in tqdm(waveforms, desc="codec features", disable=not progress):
            mono = prepare_waveform(waveform, rate, config.sampling_rate)
            features.append(model.frontend(torch.from_numpy(mono)[None])[0].numpy())
    if not features:
        raise ValueError("fit_mel_codec needs at least one waveform")
    data = np.concatenate(features)  # [N, M]
    rng = np.random.default_rng(seed)
    if len(data) > max_frames:
        data = data[rng.choice(len(data), max_frames, replace=False)]
    if len(data) < config.codebook_size:
        raise ValueError(f"Only {len(data)} frames to fit {config.codebook_size} codes per codebook; give more audio.")
    mean, std = data.mean(0), data.std(0) + 1e-5
    residual = (data - mean) / std
    codebooks = []
    for _ in tqdm(range(config.num_codebooks), desc="residual k-means", disable=not progress):
        kmeans = MiniBatchKMeans(config.codebook_size, random_state=seed, batch_size=4096, n_init=3, max_iter=100)
        labels = kmeans.fit_predict(residual)
        codebooks.append(kmeans.cluster_centers_.astype(np.float32))
        residual = residual - kmeans.cluster_centers_[labels]
    with torch.no_grad():
        model.codebooks.copy_(torch.from_numpy(np.stack(codebooks)))
        model.feature_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        model.feature_std.copy_(torch.from_numpy(std.astype(np.float32)))
    return model


__all__ = ["AudioCodec", "EncodecCodec", "MelCodec", "fit_mel_codec"]
