"""Screening a corpus before anything is fitted on it: recordings that hold no speech, mostly
silence, or far more or fewer phonemes than their speech can carry are dropped, with the reason.

``prepare`` screens every utterance before it fits the codec and trains the aligner (garbage would
otherwise teach the aligner to accept garbage), and the aligner's score then catches a wrong
transcript of plausible length. Each measure is cheap and reads the waveform only:

- level: the loudest 25 ms frame; below :data:`SILENT_DB` dBFS there is no signal;
- speech share: frames within :data:`ACTIVE_RANGE_DB` of the loudest, of all frames;
- voicing share: active frames with a periodic (pitched) signal, of all active frames (white noise
  has none; speech has many);
- phonemes per second of active signal: a transcript far too long or short for the audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Analysis rate, frame and hop (the measures do not need more).
RATE, FRAME, HOP = 16000, 400, 160
#: Below this peak level (dBFS) a recording holds no signal.
SILENT_DB = -50.0
#: Frames within this many dB of the loudest count as active.
ACTIVE_RANGE_DB = 30.0
#: Fewer active frames than this share: mostly silence.
MIN_SPEECH_SHARE = 0.2
#: Fewer voiced frames than this share of the active ones: no speech (noise, clicks, music without voice).
MIN_VOICED_SHARE = 0.1
#: Autocorrelation peak (normalised) that makes a frame voiced, searched over 70-400 Hz.
VOICING_PEAK = 0.5
#: Phonemes per second of active signal outside this range: the transcript does not fit the audio.
PHONEME_RATE = (3.0, 30.0)


@dataclass
class ScreenResult:
    """What :func:`screen_waveform` measured, and why the utterance is dropped (``reason``; ``None`` to keep)."""

    peak_db: float
    speech_share: float
    voiced_share: float
    phonemes_per_second: float
    reason: str | None


def _frames(waveform: np.ndarray) -> np.ndarray:
    """``[S]`` -> ``[N, FRAME]`` (a short signal is padded to one frame)."""
    if len(waveform) < FRAME:
        waveform = np.pad(waveform, (0, FRAME - len(waveform)))
    count = 1 + (len(waveform) - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    return waveform[index]


def _voiced(frames: np.ndarray) -> np.ndarray:
    """``[N, FRAME]`` -> ``[N]`` bool: a normalised autocorrelation peak of at least
    :data:`VOICING_PEAK` at a lag of a 70-400 Hz pitch."""
    centred = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=2 * FRAME, axis=1)
    correlation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :FRAME]  # [N, lags]
    energy = correlation[:, :1]
    low, high = RATE // 400, RATE // 70
    overlap = (FRAME - np.arange(low, high)) / FRAME  # unbiased: a long lag overlaps less
    peaks = (correlation[:, low:high] / np.maximum(energy, 1e-12) / overlap).max(axis=1)
    return peaks >= VOICING_PEAK


def screen_waveform(waveform: np.ndarray, num_phonemes: int) -> ScreenResult:
    """Measure a mono float waveform at :data:`RATE` and decide whether it can hold the transcript.

    Args:
        waveform: ``[S]`` float samples in [-1, 1] at :data:`RATE` Hz.
        num_phonemes: Phonemes of its transcript (word boundaries excluded).

    Returns:
        The measures and the reason to drop it, if any.
    """
    frames = _frames(np.asarray(waveform, dtype=np.float32))
    level = 10 * np.log10(np.maximum((frames.astype(np.float64) ** 2).mean(axis=1), 1e-12))  # [N] dBFS
    peak = float(level.max())
    if peak < SILENT_DB:
        return ScreenResult(peak, 0.0, 0.0, 0.0, f"no signal: its loudest frame is at {peak:.0f} dBFS")
    active = level > peak - ACTIVE_RANGE_DB
    speech_share = float(active.mean())
    voiced_share = float(_voiced(frames[active]).mean())
    seconds = active.sum() * HOP / RATE
    rate = num_phonemes / max(seconds, HOP / RATE)
    reason = None
    if voiced_share < MIN_VOICED_SHARE:
        reason = f"no voiced speech: {100 * voiced_share:.0f} % of its active frames are pitched (noise?)"
    elif speech_share < MIN_SPEECH_SHARE:
        reason = f"mostly silence: active signal in {100 * speech_share:.0f} % of the recording"
    elif not PHONEME_RATE[0] <= rate <= PHONEME_RATE[1]:
        reason = (f"the transcript does not fit the audio: {num_phonemes} phonemes in {seconds:.1f} s of active signal "
                  f"({rate:.1f} per second, expected {PHONEME_RATE[0]:g}-{PHONEME_RATE[1]:g})")
    return ScreenResult(peak, speech_share, voiced_share, rate, reason)


__all__ = ["ScreenResult", "screen_waveform"]
