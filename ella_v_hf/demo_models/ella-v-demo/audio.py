"""Audio I/O and conditioning: read any soundfile-supported file, mix to mono, resample (soxr)."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr


class AudioError(ValueError):
    """Audio that cannot be used (unreadable, empty, non-finite…); the message says why."""


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as float32.

    Returns:
        ``(waveform [S] or [S, C], sampling_rate)``.

    Raises:
        AudioError: If the file is missing or not audio soundfile can decode.
    """
    try:
        waveform, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError, OSError) as error:
        raise AudioError(f"Cannot read audio file {os.fspath(path)!r}: {error}") from error
    return waveform, int(rate)


def prepare_waveform(waveform: np.ndarray, sampling_rate: int, target_rate: int, name: str = "audio") -> np.ndarray:
    """Mono float32 waveform ``[S]`` at ``target_rate``.

    Args:
        waveform: ``[S]``, ``[S, C]`` (soundfile layout) or ``[C, S]`` with C <= 8 channels.
        sampling_rate: Rate of ``waveform`` in Hz.
        target_rate: Wanted rate in Hz.
        name: How to call the audio in error messages.

    Raises:
        AudioError: Empty, non-finite or wrongly shaped audio.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2:
        channel_axis = 1 if waveform.shape[1] <= 8 and waveform.shape[0] > waveform.shape[1] else 0
        waveform = waveform.mean(axis=channel_axis)
    if waveform.ndim != 1:
        raise AudioError(f"{name}: expected a mono or multi-channel waveform, got shape {waveform.shape}")
    if waveform.size == 0:
        raise AudioError(f"{name}: the waveform is empty")
    if not np.isfinite(waveform).all():
        raise AudioError(f"{name}: the waveform contains NaN or infinite samples")
    if sampling_rate <= 0:
        raise AudioError(f"{name}: invalid sampling rate {sampling_rate}")
    if sampling_rate != target_rate:
        waveform = soxr.resample(waveform, sampling_rate, target_rate).astype(np.float32)
    return waveform
