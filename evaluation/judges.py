"""Pluggable judges for evaluation: ASR (pocketsphinx offline, any transformers ASR pipeline) and
speaker similarity (resemblyzer offline, a transformers x-vector model such as WavLM-SV)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._optional import require
from ..processing.audio import prepare_waveform
from .asr import PocketsphinxASR

if TYPE_CHECKING:
    from evaluate import EvaluationModule

METRIC_SCRIPT = Path(__file__).parent / "metrics" / "wer_cer.py"


class TransformersASR:
    """Any transformers ASR model (Whisper, HuBERT-CTC, …: the paper's protocol) through ``pipeline``."""

    def __init__(self, model: str) -> None:
        from transformers import pipeline

        self.pipe = pipeline("automatic-speech-recognition", model=model)
        self.sampling_rate = self.pipe.feature_extractor.sampling_rate

    def transcribe(self, waveform: np.ndarray, sampling_rate: int) -> str:
        audio = prepare_waveform(waveform, sampling_rate, self.sampling_rate, name="ASR input")
        return self.pipe({"raw": audio, "sampling_rate": self.sampling_rate})["text"]


def load_asr(name: str):
    """``"pocketsphinx"`` or a transformers model id/path."""
    return PocketsphinxASR() if name == "pocketsphinx" else TransformersASR(name)


class ResemblyzerSimilarity:
    """Cosine similarity of resemblyzer speaker embeddings (weights ship with the package)."""

    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder, preprocess_wav

        self._encoder = VoiceEncoder(device="cpu", verbose=False)
        self._preprocess = preprocess_wav

    def embed(self, waveform: np.ndarray, sampling_rate: int) -> np.ndarray:
        return self._encoder.embed_utterance(self._preprocess(np.asarray(waveform, dtype=np.float32), source_sr=sampling_rate))

    def similarity(self, a: np.ndarray, rate_a: int, b: np.ndarray, rate_b: int) -> float:
        return float(np.dot(self.embed(a, rate_a), self.embed(b, rate_b)))


class XVectorSimilarity:
    """Cosine similarity of a transformers x-vector model (e.g. ``microsoft/wavlm-base-plus-sv``)."""

    def __init__(self, model: str) -> None:
        import torch
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.torch = torch
        self.extractor = AutoFeatureExtractor.from_pretrained(model)
        self.model = WavLMForXVector.from_pretrained(model).eval()

    def embed(self, waveform: np.ndarray, sampling_rate: int) -> np.ndarray:
        rate = self.extractor.sampling_rate
        audio = prepare_waveform(waveform, sampling_rate, rate, name="SIM input")
        inputs = self.extractor(audio, sampling_rate=rate, return_tensors="pt")
        with self.torch.no_grad():
            vector = self.model(**inputs).embeddings[0]
        return (vector / vector.norm()).numpy()

    def similarity(self, a, rate_a, b, rate_b) -> float:
        return float(np.dot(self.embed(a, rate_a), self.embed(b, rate_b)))


RESEMBLYZER_INSTALL = "pip install --no-deps resemblyzer && pip install librosa webrtcvad-wheels"


def load_similarity(name: str | None):
    """``"auto"`` (resemblyzer when installed, else none with a printed note), ``"resemblyzer"``,
    ``"none"``/None, or a transformers x-vector model id/path.

    Raises:
        ValueError: If resemblyzer is asked for by name but not installed (the message says how).
    """
    if name in (None, "none"):
        return None
    if name == "auto":
        try:
            return ResemblyzerSimilarity()
        except ImportError:
            print(f"note: speaker similarity (SIM) is skipped: resemblyzer is not installed ({RESEMBLYZER_INSTALL})", file=sys.stderr)
            return None
    if name == "resemblyzer":
        try:
            return ResemblyzerSimilarity()
        except ImportError as error:
            raise ValueError(
                f"SIM with resemblyzer needs: {RESEMBLYZER_INSTALL} ({error}); or pass --sim none"
            ) from error
    return XVectorSimilarity(name)


@functools.lru_cache(maxsize=1)
def _wer_cer_metric() -> EvaluationModule:
    """The shipped local WER/CER metric, loaded once per process (``evaluate.load`` reads the script)."""
    evaluate = require("evaluate", "eval", "WER/CER")
    require("jiwer", "eval", "WER/CER")
    return evaluate.load(str(METRIC_SCRIPT))


def wer_cer(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus WER/CER through ``evaluate`` with the shipped local metric, on normalised text."""
    from .asr import normalize_transcript

    metric = _wer_cer_metric()
    refs = [normalize_transcript(r) for r in references]
    hyps = [normalize_transcript(h) for h in hypotheses]
    return metric.compute(predictions=hyps, references=refs)
