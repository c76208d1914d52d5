"""The offline ASR judge (pocketsphinx) and the text normalisation both sides of a WER go through."""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from .._optional import require
from ..processing.audio import prepare_waveform


def normalize_transcript(text: str) -> str:
    """Lower-case, spell out numbers, strip punctuation: the text both sides of a WER go through."""
    from ..processing.text_normalization import normalize_text

    try:
        text = normalize_text(text)
    except ValueError:
        pass
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return re.sub(r"\s+", " ", text).strip()


class PocketsphinxASR:
    """pocketsphinx 5 with its bundled US-English model (offline; 16 kHz)."""

    sampling_rate = 16000

    def __init__(self) -> None:
        Decoder = require("pocketsphinx", "eval", "The pocketsphinx ASR judge").Decoder

        self.decoder = Decoder(samprate=self.sampling_rate, loglevel="FATAL")

    def transcribe(self, waveform: np.ndarray, sampling_rate: int) -> str:
        audio = prepare_waveform(waveform, sampling_rate, self.sampling_rate, name="ASR input")
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        # The feature front end (cepstral mean normalisation) adapts to everything it has heard:
        # reset it, so a transcript never depends on what was judged before it (a shared decoder
        # changed 4 of 30 held-out ground-truth transcripts; resetting gives a fresh decoder's).
        self.decoder.reinit_feat()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""
