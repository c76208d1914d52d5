"""Aligners: per-token durations in codec frames for an utterance, behind one interface.

    aligner.align(waveform [S] at aligner.sampling_rate, phoneme_ids, *, source=AUDIO_PATH,
                  utterance_id=ID, check=True) -> Alignment(durations, score)

``durations`` has one entry per token and sums to the utterance's codec frame count
(``ceil(S * frame_rate / sampling_rate)``). Implementations, chosen by name in ``ella-v prepare
--aligner NAME`` (the registry :data:`ALIGNERS`):

- ``builtin``: :class:`~ella_v_hf.modeling.EllaVAlignerModel`, Viterbi-trained on the corpus
  (:mod:`.builtin`); it also ships inside a checkpoint and aligns a user's prompt audio at synthesis.
- ``textgrid``: :class:`~.textgrid.TextGridAligner`, Montreal Forced Aligner TextGrids.

Adding an aligner: one module with a class that has ``align`` (and ``frame_rate``,
``sampling_rate``), plus one entry in :data:`ALIGNERS` naming a factory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ...modeling.aligner_ella_v import Alignment, AlignmentError


class Aligner(Protocol):
    """What ``ella-v prepare`` and prompt handling need of an aligner."""

    frame_rate: float
    sampling_rate: int

    def align(self, waveform: np.ndarray, phoneme_ids: Sequence[int], *, source: str | None = None,
              utterance_id: str | None = None, check: bool = True) -> Alignment: ...


@dataclass
class AlignerContext:
    """What a factory may use to build an aligner.

    Args:
        tokenizer: The phoneme tokenizer.
        sampling_rate / frame_rate: The codec's (durations are in its frames).
        model: A saved aligner (name-specific; e.g. an EllaVAlignerModel directory).
        textgrid_dir: Folder of TextGrids (``textgrid``).
        training_examples: Called with no argument, yields ``(waveform, phoneme_ids)`` pairs to
            train on (``builtin`` without ``model``).
        seed / iterations / progress: Training options.
    """

    tokenizer: object
    sampling_rate: int
    frame_rate: float
    model: str | None = None
    textgrid_dir: str | None = None
    training_examples: Callable[[], Iterable[tuple[np.ndarray, Sequence[int]]]] | None = None
    seed: int = 0
    iterations: int = 4
    progress: bool = True


def _builtin(context: AlignerContext) -> Aligner:
    from ...modeling.aligner_ella_v import EllaVAlignerModel
    from .builtin import builtin_aligner_config, train_aligner

    if context.model:
        from transformers import AutoConfig

        if AutoConfig.from_pretrained(context.model).model_type == "ella_v_tts":  # a text-to-speech checkpoint's own aligner
            from ...modeling import EllaVForTextToSpeech

            aligner = EllaVForTextToSpeech.from_pretrained(context.model).aligner
            if aligner is None:
                raise ValueError(f"The checkpoint {context.model} has no aligner; pass a saved EllaVAlignerModel directory.")
            return aligner.eval()
        return EllaVAlignerModel.from_pretrained(context.model).eval()
    if context.training_examples is None:
        raise ValueError("The built-in aligner needs a saved model or training examples.")
    examples = list(context.training_examples())
    if not examples:
        raise ValueError("No readable audio to train the aligner on.")
    config = builtin_aligner_config(context.tokenizer, context.sampling_rate, context.frame_rate)
    return train_aligner(examples, config, iterations=context.iterations, seed=context.seed, progress=context.progress).eval()


def _textgrid(context: AlignerContext) -> Aligner:
    from .textgrid import TextGridAligner

    return TextGridAligner(context.tokenizer, context.frame_rate, context.sampling_rate, context.textgrid_dir)


#: Aligner name -> factory. ``ctc`` is kept as an alias of ``builtin`` (earlier releases' name).
ALIGNERS: dict[str, Callable[[AlignerContext], Aligner]] = {"builtin": _builtin, "ctc": _builtin, "textgrid": _textgrid}


def build_aligner(name: str, context: AlignerContext) -> Aligner:
    """The aligner registered as ``name``.

    Raises:
        ValueError: Unknown name (the message lists the known ones).
    """
    if name not in ALIGNERS:
        raise ValueError(f"Unknown aligner {name!r}; expected one of {sorted(ALIGNERS)}")
    return ALIGNERS[name](context)


__all__ = ["ALIGNERS", "Aligner", "AlignerContext", "Alignment", "AlignmentError", "build_aligner"]
