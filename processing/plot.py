"""Speech plots (PNG): waveform, log-mel spectrogram and labelled phone spans, for ``ella-v
synthesize --plot`` and ``ella-v plot-alignment``. Needs matplotlib (``pip install 'ella-v-hf[plot]'``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from .._optional import require
from ..modeling.mel import LogMel


def spans_from_durations(tokens: Sequence[str], durations: Sequence[int], frame_rate: float) -> list[tuple[str, float, float]]:
    """``(symbol, start s, end s)`` per token from per-token frame counts (tokens with 0 frames included)."""
    edges = np.concatenate([[0], np.cumsum(durations)]) / frame_rate
    return [(token, float(edges[i]), float(edges[i + 1])) for i, token in enumerate(tokens)]


def plot_speech(
    waveform: np.ndarray,
    sampling_rate: int,
    path: str | os.PathLike,
    title: str | None = None,
    segments: Sequence[tuple[str, float, float]] = (),
    frame_rate: float = 50.0,
) -> None:
    """Write a PNG of ``waveform`` (top) and its log-mel spectrogram with one labelled span per segment (bottom).

    Args:
        waveform: Mono float waveform ``[S]``.
        sampling_rate: Its rate in Hz.
        path: Output PNG path.
        title: Optional title.
        segments: ``(symbol, start s, end s)`` spans to mark (e.g. generated phones or an alignment).
        frame_rate: Spectrogram frames per second.
    """
    matplotlib = require("matplotlib", "plot", "Plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hop = max(1, round(sampling_rate / frame_rate))
    mel = LogMel(sampling_rate, max(1024, 2 * hop), hop, 80)(torch.as_tensor(waveform, dtype=torch.float32)[None])[0]
    seconds = len(waveform) / sampling_rate
    width = max(8.0, min(40.0, mel.shape[0] / 25))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 5), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    top.plot(np.arange(len(waveform)) / sampling_rate, waveform, linewidth=0.4)
    if title:
        top.set_title(title[:120], pad=18)
    bottom.imshow(mel.T.numpy(), origin="lower", aspect="auto", cmap="magma", extent=(0, mel.shape[0] / frame_rate, 0, 80))
    for symbol, start, end in segments:
        bottom.axvline(start, color="cyan", linewidth=0.6)
        if end > start:
            bottom.text((start + end) / 2, 82, symbol, ha="center", va="bottom", fontsize=8, clip_on=False)
    bottom.set_xlim(0, max(seconds, 1e-3))
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("mel band")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["plot_speech", "spans_from_durations"]
