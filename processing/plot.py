"""Alignment plot: log-mel spectrogram with the token boundaries and labels (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ..modeling.codec_mel import LogMel


def plot_alignment(
    waveform: np.ndarray,
    sampling_rate: int,
    tokens: Sequence[str],
    durations: Sequence[int],
    frame_rate: float,
    path: str | os.PathLike,
    title: str | None = None,
) -> None:
    """Write a PNG of the spectrogram of ``waveform`` with one labelled span per token.

    Args:
        waveform: Mono float waveform ``[S]``.
        sampling_rate: Its rate in Hz.
        tokens: Token symbols ``[N]``.
        durations: Frames per token ``[N]`` at ``frame_rate``.
        frame_rate: Frames per second of ``durations``.
        path: Output PNG path.
        title: Optional title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hop = max(1, round(sampling_rate / frame_rate))
    mel = LogMel(sampling_rate, max(1024, 2 * hop), hop, 80)(torch.as_tensor(waveform, dtype=torch.float32)[None])[0]
    width = max(8.0, min(40.0, mel.shape[0] / 25))
    fig, ax = plt.subplots(figsize=(width, 4))
    ax.imshow(mel.T.numpy(), origin="lower", aspect="auto", cmap="magma", extent=(0, mel.shape[0] / frame_rate, 0, 80))
    position = 0
    for token, duration in zip(tokens, durations):
        start, end = position / frame_rate, (position + duration) / frame_rate
        ax.axvline(start, color="cyan", linewidth=0.6)
        if duration:
            ax.text((start + end) / 2, 82, token, ha="center", va="bottom", fontsize=8, clip_on=False)
        position += duration
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel band")
    if title:
        ax.set_title(title, pad=18)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
