"""Speech quality beside intelligibility: DNSMOS for any audio, and for a resynthesis against its
reference the measures codec papers report (PESQ wide band, STOI, log-mel distance).

- **DNSMOS** (Reddy et al., 2021/2022): a non-intrusive MOS predictor trained on human ratings,
  through the ``speechmos`` package, which ships Microsoft's ONNX weights (no download). ``p808``
  is the P.808 overall-quality model; ``sig``/``bak``/``ovrl`` are the P.835 signal, background and
  overall scores. Audio is judged at 16 kHz in 9 s windows (shorter clips are looped, as DNSMOS does).
- **PESQ** (ITU-T P.862.2, wide band, 16 kHz) and **STOI** (Taal et al., 2011) compare a
  resynthesis with its reference sample by sample, so both are trimmed to the shorter length.
- **Log-mel distance**: mean absolute difference of natural-log mel magnitudes (80 bands, 1,024-point
  FFT, hop 256 at 16 kHz, floor 1e-5), the same analysis for every codec so rows compare.

All need the ``[eval]`` extra (``speechmos``, ``onnxruntime``, ``librosa``, ``pesq``, ``pystoi``).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from .._optional import require
from ..modeling.mel import LogMel
from ..processing.audio import prepare_waveform

RATE = 16000
DNSMOS_FIELDS = ("p808", "sig", "bak", "ovrl")


class DNSMOS:
    """DNSMOS P.808 and P.835 scores of a waveform (``speechmos``'s ONNX models, ``threads`` CPU threads)."""

    def __init__(self, threads: int | None = None) -> None:
        require("librosa", "eval", "DNSMOS")
        ort = require("onnxruntime", "eval", "DNSMOS")
        dnsmos = require("speechmos.dnsmos", "eval", "DNSMOS")
        folder = os.path.join(os.path.dirname(dnsmos.__file__), "dnsmos_models")
        primary, p808 = os.path.join(folder, "sig_bak_ovr.onnx"), os.path.join(folder, "model_v8.onnx")
        self._scorer = dnsmos.DNSMOS(primary, p808)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # speechmos opens its sessions with every core; reopened with the caller's thread count.
        self._scorer.onnx_sess = ort.InferenceSession(primary, options)
        self._scorer.p808_onnx_sess = ort.InferenceSession(p808, options)

    def __call__(self, waveform: np.ndarray, sampling_rate: int) -> dict[str, float]:
        """Mono ``[S]`` at any rate -> ``{"p808", "sig", "bak", "ovrl"}`` (MOS, 1 to 5).

        Raises:
            ValueError: Empty or unusable audio (from ``prepare_waveform``).
        """
        audio = prepare_waveform(waveform, sampling_rate, RATE, name="DNSMOS input")
        audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
        scores = self._scorer(audio, RATE, False)
        return {"p808": float(scores["p808_mos"]), "sig": float(scores["sig_mos"]),
                "bak": float(scores["bak_mos"]), "ovrl": float(scores["ovrl_mos"])}


def load_dnsmos(choice: str) -> DNSMOS | None:
    """``"auto"`` (DNSMOS where its packages are installed, else none with a printed note), ``"yes"``
    (an error names the install line when missing) or ``"no"``."""
    if choice == "no":
        return None
    if choice not in ("auto", "yes"):
        raise ValueError(f"dnsmos must be auto, yes or no, got {choice!r}")
    try:
        return DNSMOS()
    except ImportError as error:
        if choice == "yes":
            raise
        print(f"note: DNSMOS is skipped ({error})", file=sys.stderr)
        return None


_LOG_MEL = LogMel(RATE, n_fft=1024, hop_length=256, n_mels=80)


def _pair(reference: np.ndarray, reference_rate: int, estimate: np.ndarray, estimate_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Both waveforms at 16 kHz, trimmed to the shorter one: ``([S], [S])``."""
    reference = prepare_waveform(reference, reference_rate, RATE, name="reference")
    estimate = prepare_waveform(estimate, estimate_rate, RATE, name="resynthesis")
    length = min(len(reference), len(estimate))
    if length < RATE // 4:
        raise ValueError(f"a reference comparison needs at least 0.25 s of both signals, got {length / RATE:.3f} s")
    return reference[:length].astype(np.float32), estimate[:length].astype(np.float32)


def _mel_distance(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean absolute log-mel difference of two paired 16 kHz waveforms ``[S]`` (from :func:`_pair`)."""
    with torch.no_grad():
        mels = _LOG_MEL(torch.from_numpy(np.stack([reference, estimate])))  # [2, T, 80]
    return float((mels[0] - mels[1]).abs().mean())


def log_mel_distance(reference: np.ndarray, reference_rate: int, estimate: np.ndarray, estimate_rate: int) -> float:
    """Mean absolute log-mel difference (see the module docstring); 0 for identical signals."""
    return _mel_distance(*_pair(reference, reference_rate, estimate, estimate_rate))


def reference_scores(reference: np.ndarray, reference_rate: int, estimate: np.ndarray, estimate_rate: int) -> dict[str, float]:
    """``{"pesq", "stoi", "mel_distance"}`` of ``estimate`` against ``reference`` (mono ``[S]`` each).

    PESQ is ``nan`` where the ITU algorithm finds no utterance in the reference.
    """
    pesq = require("pesq", "eval", "PESQ")
    pystoi = require("pystoi", "eval", "STOI")
    ref, est = _pair(reference, reference_rate, estimate, estimate_rate)
    try:
        pesq_wb = float(pesq.pesq(RATE, ref, est, "wb"))
    except pesq.NoUtterancesError:
        pesq_wb = float("nan")
    return {
        "pesq": pesq_wb,
        "stoi": float(pystoi.stoi(ref, est, RATE, extended=False)),
        "mel_distance": _mel_distance(ref, est),
    }


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-key mean over ``rows`` (nan entries left out), rounded to 4 digits; ``{}`` for no rows."""
    if not rows:
        return {}
    return {key: round(float(np.nanmean([row[key] for row in rows])), 4) for key in rows[0]}


__all__ = ["DNSMOS", "DNSMOS_FIELDS", "load_dnsmos", "log_mel_distance", "mean_scores", "reference_scores"]
