"""Fitting of the residual k-means mel codec (:class:`~ella_v_hf.modeling.EllaVMelCodecModel`) on a corpus."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from .._optional import require
from ..modeling.codec_mel import EllaVMelCodecConfig, EllaVMelCodecModel
from .audio import prepare_waveform


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
    MiniBatchKMeans = require("sklearn.cluster", "train", "Fitting the k-means mel codec").MiniBatchKMeans

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


__all__ = ["fit_mel_codec"]
