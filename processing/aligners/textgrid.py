"""Import Montreal Forced Aligner TextGrids (the paper's aligner) as per-token codec-frame durations.

Vocabulary choice: the tokenizer's espeak phonemes stay the vocabulary (so text-only inference
produces the same kind of sequence as training), and MFA's timing is mapped onto them:

- the ``words`` tier gives word spans; silent intervals (empty, ``sil``, ``sp``, ``spn``…)
  become frames of the separator token between the words (or of the leading ``|``);
- inside a word, the espeak phonemes split the word's span at the MFA phone boundaries when the
  counts agree, else proportionally to MFA's phone timing (piecewise-linear in phone index);
- durations are rounded to codec frames so that they sum to the utterance's frame count and
  every phoneme owns at least one frame.

TextGrid parsing is praatio's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..._optional import require
from ...modeling.aligner_ella_v import Alignment
from ..tokenization_ella_v import SEPARATOR_TOKENS, WORD_BOUNDARY, token_words

SILENCE_LABELS = {"", "sil", "sp", "spn", "<eps>", "pau", "silence"}


class TextGridMismatch(ValueError):
    """The TextGrid's words do not match the transcript, or its tiers are unusable."""


def _intervals(path: str | os.PathLike, tier_names: Sequence[str]):
    textgrid = require("praatio.textgrid", "textgrid", "TextGrid import")

    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    except Exception as error:  # praatio raises several types for malformed files
        raise TextGridMismatch(f"Cannot read TextGrid {os.fspath(path)!r}: {error}") from error
    for name in tier_names:
        if name in grid.tierNames:
            return [(e.start, e.end, e.label.strip()) for e in grid.getTier(name).entries], grid.maxTimestamp
    raise TextGridMismatch(f"TextGrid {os.fspath(path)!r} has no tier named any of {list(tier_names)} (has {grid.tierNames})")


def textgrid_durations(path: str | os.PathLike, tokens: Sequence[str], num_frames: int, frame_rate: float) -> list[int]:
    """Per-token durations (codec frames) of a tokenizer sequence from an MFA TextGrid.

    Args:
        path: The TextGrid (tiers ``words`` and ``phones``, as MFA writes them).
        tokens: The utterance's tokenizer symbols (``| h ə l oʊ , w ɜː l d !``).
        num_frames: Codec frames of the audio (the durations sum to it).
        frame_rate: Codec frames per second.

    Returns:
        One duration per token.

    Raises:
        TextGridMismatch: Word counts differ, tiers are missing, or the audio is too short.
    """
    words = token_words(tokens)
    word_tier, _ = _intervals(path, ("words", "Words", "word"))
    phone_tier, _ = _intervals(path, ("phones", "Phones", "phone"))
    spoken = [(s, e, label) for s, e, label in word_tier if label.lower() not in SILENCE_LABELS]
    if len(spoken) != len(words):
        raise TextGridMismatch(
            f"TextGrid has {len(spoken)} words but the transcript phonemises to {len(words)} words "
            f"({[label for *_, label in spoken][:8]}…)"
        )
    # Token end times in seconds for the sequence | w1 sep1 w2 sep2 ...; a separator owns the
    # silence up to the next word (the leading | the silence before the first word).
    tokens = [WORD_BOUNDARY]
    ends = [spoken[0][0]]
    next_starts = [s for s, _, _ in spoken[1:]] + [num_frames / frame_rate]
    for (start, end, _), (phones, separator), next_start in zip(spoken, words, next_starts):
        inner = [
            (s, e)
            for s, e, label in phone_tier
            if s >= start - 1e-6 and e <= end + 1e-6 and label.lower() not in SILENCE_LABELS
        ]
        if inner:
            boundaries = np.array([inner[0][0]] + [e for _, e in inner])  # MFA phone boundaries
            positions = np.linspace(0, len(inner), len(phones) + 1)[1:]
            phone_ends = np.interp(positions, np.arange(len(inner) + 1), boundaries)
        else:
            phone_ends = np.linspace(start, end, len(phones) + 1)[1:]
        tokens += [*phones, separator]
        ends += [float(t) for t in phone_ends] + [max(float(end), next_start)]
    optional = [t in SEPARATOR_TOKENS for t in tokens]
    return frames_from_boundaries(ends, num_frames, frame_rate, optional)


def frames_from_boundaries(ends: Sequence[float], num_frames: int, frame_rate: float, optional: Sequence[bool]) -> list[int]:
    """Round token end times (seconds) to frame counts summing to ``num_frames``; mandatory
    tokens get at least one frame (taken from the longest token).

    Raises:
        TextGridMismatch: If there are fewer frames than mandatory tokens.
    """
    mandatory = sum(1 for o in optional if not o)
    if num_frames < mandatory:
        raise TextGridMismatch(f"{num_frames} frames are too few for {mandatory} phonemes")
    edges = np.clip(np.round(np.asarray(ends, dtype=float) * frame_rate), 0, num_frames).astype(int)
    edges = np.maximum.accumulate(edges)
    edges[-1] = num_frames
    durations = np.diff(np.concatenate([[0], edges])).tolist()
    spare = [d - (0 if opt else 1) for d, opt in zip(durations, optional)]  # frames a token can give
    for i, opt in enumerate(optional):
        if not opt and durations[i] == 0:
            donor = int(np.argmax(spare))
            durations[donor] -= 1
            spare[donor] -= 1
            durations[i] += 1
            spare[i] = 0
    return durations


class TextGridAligner:
    """The MFA TextGrid importer behind the aligner interface (``ella-v prepare --aligner textgrid``).

    Args:
        tokenizer: The phoneme tokenizer (ids -> symbols).
        frame_rate: Codec frames per second.
        sampling_rate: Rate of the waveforms given to :meth:`align`.
        textgrid_dir: Where ``<utterance id>.TextGrid`` files are; by default beside the audio
            (``<audio stem>.TextGrid``).
    """

    def __init__(self, tokenizer, frame_rate: float, sampling_rate: int, textgrid_dir: str | os.PathLike | None = None) -> None:
        self.tokenizer, self.frame_rate, self.sampling_rate = tokenizer, frame_rate, sampling_rate
        self.textgrid_dir = textgrid_dir

    def textgrid_path(self, source: str, utterance_id: str | None = None) -> str:
        """The TextGrid of an utterance (``source``: its audio path)."""
        if self.textgrid_dir:
            stem = utterance_id or os.path.splitext(os.path.basename(source))[0]
            candidates = [os.path.join(self.textgrid_dir, f"{name}.TextGrid") for name in dict.fromkeys([stem, os.path.basename(stem)])]
        else:
            candidates = [os.path.splitext(source)[0] + ".TextGrid"]
        for path in candidates:
            if os.path.isfile(path):
                return path
        raise TextGridMismatch(f"no TextGrid found (looked for {candidates})")

    def align(self, waveform, phoneme_ids: Sequence[int], *, source: str | None = None, utterance_id: str | None = None, check: bool = True) -> Alignment:
        """Durations of ``phoneme_ids`` for the utterance whose audio is ``source`` (score 0: not scored)."""
        if source is None:
            raise TextGridMismatch("the TextGrid aligner needs the utterance's audio path (source=) to find its TextGrid")
        num_frames = int(np.ceil(len(waveform) * self.frame_rate / self.sampling_rate))
        tokens = self.tokenizer.convert_ids_to_tokens(list(phoneme_ids))
        return Alignment(durations=textgrid_durations(self.textgrid_path(source, utterance_id), tokens, num_frames, self.frame_rate), score=0.0)


__all__ = ["SILENCE_LABELS", "TextGridAligner", "TextGridMismatch", "frames_from_boundaries", "textgrid_durations"]
