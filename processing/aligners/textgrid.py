"""Import Montreal Forced Aligner TextGrids (the paper's aligner) as per-token codec-frame durations.

Vocabulary choice: the tokenizer's espeak phonemes stay the vocabulary (so text-only inference
produces the same kind of sequence as training), and MFA's timing is mapped onto them:

- the ``words`` tier gives word spans; silent intervals (empty, ``sil``, ``sp``, ``spn``…)
  become frames of the separator token between the words (or of the leading ``|``);
- MFA's words are mapped onto the tokenizer's words without requiring equal counts: espeak
  joins some word pairs (``on the``, ``of a``, ``from the`` …) into one word, and splits a few.
  A monotonic dynamic programme groups 1-3 words on one side with one on the other, matching
  phone counts (MFA phones in a word's span vs the word's espeak phonemes); a grid whose words
  cannot be matched that way is a mismatch;
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


#: Word groupings the mapping may use: (MFA words, tokenizer words).
GROUPINGS = ((1, 1), (2, 1), (1, 2), (3, 1), (1, 3))
#: Cost of a grouping other than 1:1, in phones (prefers 1:1 when the counts tie).
GROUPING_COST = 0.5
#: A mapping whose phone-count differences exceed this fraction of the phonemes is a mismatch.
MAX_MISMATCH_FRACTION = 0.3
#: A grid may end this much after the audio (rounding) before it is refused.
LENGTH_TOLERANCE_SECONDS = 0.05


def map_words(mfa_counts: Sequence[int], token_counts: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Group MFA words with tokenizer words, monotonically, by phone counts.

    Args:
        mfa_counts: Phones in each MFA word's span.
        token_counts: Phonemes in each tokenizer word.

    Returns:
        ``(mfa_start, mfa_end, token_start, token_end)`` groups covering both sides in order
        (end-exclusive); 1:1 everywhere when the counts of words agree.

    Raises:
        TextGridMismatch: No grouping keeps the phone-count differences under
            ``MAX_MISMATCH_FRACTION`` of the phonemes.
    """
    a, b = len(mfa_counts), len(token_counts)
    if a == b:
        return [(i, i + 1, i, i + 1) for i in range(a)]
    inf = float("inf")
    cost = np.full((a + 1, b + 1), inf)
    back: dict[tuple[int, int], tuple[int, int]] = {}
    cost[0, 0] = 0.0
    for i in range(a + 1):
        for j in range(b + 1):
            if cost[i, j] == inf:
                continue
            for da, db in GROUPINGS:
                if i + da > a or j + db > b:
                    continue
                step = abs(sum(mfa_counts[i : i + da]) - sum(token_counts[j : j + db])) + (0 if da == db == 1 else GROUPING_COST)
                if cost[i, j] + step < cost[i + da, j + db]:
                    cost[i + da, j + db] = cost[i, j] + step
                    back[(i + da, j + db)] = (i, j)
    total = max(1, sum(token_counts))
    if cost[a, b] == inf or cost[a, b] > MAX_MISMATCH_FRACTION * total:
        found = "no grouping" if cost[a, b] == inf else f"the best grouping differs by {cost[a, b]:.1f} of {total} phones"
        raise TextGridMismatch(f"the TextGrid's {a} words do not match the transcript's {b} words ({found})")
    groups, cell = [], (a, b)
    while cell != (0, 0):
        previous = back[cell]
        groups.append((previous[0], cell[0], previous[1], cell[1]))
        cell = previous
    return groups[::-1]


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
        TextGridMismatch: The words cannot be matched (see :func:`map_words`), tiers are missing,
            the grid is longer than the audio, or the audio is too short.
    """
    words = token_words(tokens)
    word_tier, grid_end = _intervals(path, ("words", "Words", "word"))
    phone_tier, _ = _intervals(path, ("phones", "Phones", "phone"))
    audio_seconds = num_frames / frame_rate
    if grid_end > audio_seconds + LENGTH_TOLERANCE_SECONDS:
        raise TextGridMismatch(
            f"TextGrid {os.fspath(path)!r} covers {grid_end:.2f} s but the audio lasts {audio_seconds:.2f} s: "
            "it belongs to another (longer) recording"
        )
    spoken = [(s, e, label) for s, e, label in word_tier if label.lower() not in SILENCE_LABELS]
    if not spoken:
        raise TextGridMismatch(f"TextGrid {os.fspath(path)!r} has no spoken words")
    phones = [(s, e) for s, e, label in phone_tier if label.lower() not in SILENCE_LABELS]

    def inside(start: float, end: float) -> list[tuple[float, float]]:
        return [(s, e) for s, e in phones if s >= start - 1e-6 and e <= end + 1e-6]

    groups = map_words([len(inside(s, e)) for s, e, _ in spoken], [len(p) for p, _ in words])
    # Token end times in seconds for the sequence | w1 sep1 w2 sep2 ...; a separator owns the
    # silence up to the next word (the leading | the silence before the first word); separators
    # inside a group (words espeak split) last no time.
    tokens = [WORD_BOUNDARY]
    ends = [spoken[0][0]]
    for index, (i0, i1, j0, j1) in enumerate(groups):
        start, end = spoken[i0][0], spoken[i1 - 1][1]
        next_start = spoken[groups[index + 1][0]][0] if index + 1 < len(groups) else audio_seconds
        group_words = words[j0:j1]
        count = sum(len(p) for p, _ in group_words)
        inner = inside(start, end)
        if inner:
            boundaries = np.array([inner[0][0]] + [e for _, e in inner])  # MFA phone boundaries
            positions = np.linspace(0, len(inner), count + 1)[1:]
            phone_ends = np.interp(positions, np.arange(len(inner) + 1), boundaries)
        else:
            phone_ends = np.linspace(start, end, count + 1)[1:]
        done = 0
        for k, (word_phones, separator) in enumerate(group_words):
            tokens += [*word_phones, separator]
            word_ends = [float(t) for t in phone_ends[done : done + len(word_phones)]]
            done += len(word_phones)
            last = word_ends[-1] if word_ends else (ends[-1])
            ends += word_ends + ([max(float(end), next_start)] if k == len(group_words) - 1 else [last])
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


__all__ = ["SILENCE_LABELS", "map_words", "TextGridAligner", "TextGridMismatch", "frames_from_boundaries", "textgrid_durations"]
