"""EllaVProcessor: text (+ optional prompt audio and its transcript) -> model inputs.

It is the phoneme tokenizer plus audio handling: a prompt's audio is mixed to mono, resampled to
the model's codec rate, checked (length, silence, clipping) and batched; the model encodes it with
its codec and aligns it with its aligner (``EllaVForTextToSpeech.generate``). The processor runs
no neural network. ``save_pretrained`` writes the tokenizer files and ``processor_config.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .audio import AudioError, prepare_waveform

try:  # the installed package: transformers internals live in one module, behind feature checks
    from ella_v_hf.modeling.transformers_compat import without_remote_code
except ImportError:  # as Hub remote code (no ella_v_hf): the processor saves with its code
    without_remote_code = None

logger = logging.get_logger(__name__)

AudioInput = np.ndarray | torch.Tensor


def continuation_drops_boundary(prompt_ids: Sequence[int], target_ids: Sequence[int], separator_ids: Iterable[int], word_boundary_id: int) -> bool:
    """Whether a target that follows a prompt loses its leading word boundary: the prompt ends with a
    separator (``.``, ``,`` …) and the target starts with ``|``; the joined text has one separator
    there, never ``. |``. The processor (prompted inference) and ``GarCollator`` (prompt pairs in
    training) both follow this rule."""
    return bool(prompt_ids) and prompt_ids[-1] in set(separator_ids) and list(target_ids[:1]) == [word_boundary_id]


class EllaVProcessor(ProcessorMixin):
    """Processor for ELLA-V text-to-speech.

    Args:
        tokenizer: An :class:`~ella_v_hf.processing.EllaVPhonemeTokenizer`.
        sampling_rate: The model's codec rate; prompt audio is resampled to it.
        min_prompt_seconds: Shortest usable prompt.
        silence_dbfs: A prompt whose RMS level is below this (dBFS) counts as silent.

    Example:

    ```python
    >>> processor = EllaVProcessor(tokenizer, sampling_rate=16000)  # doctest: +SKIP
    >>> inputs = processor("Target text.", prompt_audio=wav, prompt_text="What the prompt says.", sampling_rate=16000)  # doctest: +SKIP
    >>> sorted(inputs)  # doctest: +SKIP
    ['attention_mask', 'input_ids', 'prompt_attention_mask', 'prompt_input_ids', 'prompt_input_values', 'prompt_padding_mask']
    ```
    """

    def __init__(self, tokenizer, sampling_rate: int = 16000, min_prompt_seconds: float = 0.5, silence_dbfs: float = -55.0) -> None:
        self.sampling_rate = sampling_rate
        self.min_prompt_seconds = min_prompt_seconds
        self.silence_dbfs = silence_dbfs
        super().__init__(tokenizer)

    # -- text --------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str],
        prompt_audio: AudioInput | Sequence[AudioInput] | None = None,
        prompt_text: str | Sequence[str] | None = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Prepare model inputs.

        Args:
            text: Target text(s).
            prompt_audio: A prompt waveform (``[S]``, or ``[S, C]``/``[C, S]`` multi-channel, mixed down),
                or a list of them (one per text).
            prompt_text: Transcript(s) of the prompt audio.
            sampling_rate: Rate of ``prompt_audio`` (resampled to the codec's).
            return_tensors: ``"pt"`` or None for lists.

        Returns:
            ``BatchFeature`` with ``input_ids``/``attention_mask`` ``[B, L]`` (target phoneme ids,
            right-padded; after a prompt without their leading word boundary, as in the joined text) and, with a prompt, ``prompt_input_ids``/``prompt_attention_mask``
            ``[B, Lp]`` (its transcript), ``prompt_input_values`` ``[B, 1, S]`` (mono audio at
            ``self.sampling_rate``, zero-padded) and ``prompt_padding_mask`` ``[B, S]`` (1 on real samples).

        Raises:
            ValueError: Bad text, or a prompt that is silent, too short or not audio (the message says which).
        """
        texts = [text] if isinstance(text, str) else list(text)
        ids = self.tokenizer.batch_encode_phonemes(texts)
        data: dict[str, list] = {"input_ids": ids}
        if prompt_audio is not None:
            if prompt_text is None:
                raise ValueError("prompt_audio needs prompt_text (its transcript) to be aligned.")
            if sampling_rate is None:
                raise ValueError("prompt_audio needs sampling_rate.")
            audios = [prompt_audio] if _is_single_audio(prompt_audio) else list(prompt_audio)
            prompt_texts = [prompt_text] if isinstance(prompt_text, str) else list(prompt_text)
            if len(texts) > 1:  # one prompt (audio and/or transcript) for every text
                audios = audios * len(texts) if len(audios) == 1 else audios
                prompt_texts = prompt_texts * len(texts) if len(prompt_texts) == 1 else prompt_texts
            if not (len(audios) == len(prompt_texts) == len(texts)):
                raise ValueError(
                    f"Got {len(texts)} texts, {len(audios)} prompt audios and {len(prompt_texts)} prompt texts."
                )
            data["prompt_input_ids"] = self.tokenizer.batch_encode_phonemes(prompt_texts)
            data["input_ids"] = [self._continuation(p, t) for p, t in zip(data["prompt_input_ids"], ids)]
            data["prompt_input_values"] = [self.prepare_prompt_audio(a, sampling_rate) for a in audios]
        return self._to_batch(data, return_tensors)

    def _continuation(self, prompt_ids: list[int], target_ids: list[int]) -> list[int]:
        """The target's ids as they follow the prompt's in one utterance.

        A text's ids start with the word boundary (``| w1 sep1 w2 sep2 …``) and end with a
        separator, so ``prompt + target`` would hold two separators in a row (``. |``), a sequence
        training never contains: the tokenizer gives ``| prompt-words . target-words .`` for the
        joined text. The target's leading boundary is dropped.
        """
        if continuation_drops_boundary(prompt_ids, target_ids, self.tokenizer.separator_token_ids, self.tokenizer.word_boundary_token_id):
            return target_ids[1:]
        return target_ids

    def prepare_prompt_audio(self, audio: AudioInput, sampling_rate: int) -> np.ndarray:
        """Mix to mono, resample to ``self.sampling_rate`` and check one prompt: ``[S]`` / ``[S, C]`` -> ``[S']``.

        Raises:
            AudioError: Not audio, shorter than ``min_prompt_seconds``, or silent.
        """
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        try:
            waveform = prepare_waveform(np.asarray(audio), int(sampling_rate), self.sampling_rate, name="prompt audio")
        except (TypeError, ValueError) as error:
            raise AudioError(f"Prompt audio is not usable audio: {error}") from error
        seconds = len(waveform) / self.sampling_rate
        if seconds < self.min_prompt_seconds:
            raise AudioError(f"Prompt audio is {seconds:.2f} s long; at least {self.min_prompt_seconds} s is needed.")
        level = 20 * np.log10(np.sqrt(np.mean(np.square(waveform))) + 1e-12)
        if level < self.silence_dbfs:
            raise AudioError(f"Prompt audio is silent (RMS {level:.1f} dBFS < {self.silence_dbfs} dBFS).")
        if np.mean(np.abs(waveform) >= 0.999) > 0.01:
            logger.warning("Prompt audio is clipped (over 1% of samples at full scale); quality may suffer.")
        return waveform

    def _to_batch(self, data: dict[str, list], return_tensors: str | None) -> BatchFeature:
        if return_tensors is None:
            return BatchFeature(data)
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        out: dict[str, torch.Tensor] = {}
        for key, mask_key in (("input_ids", "attention_mask"), ("prompt_input_ids", "prompt_attention_mask")):
            if key in data:
                out[key], out[mask_key] = _pad([torch.tensor(x) for x in data[key]], self.tokenizer.pad_token_id)
        if "prompt_input_values" in data:
            waves = [torch.from_numpy(w) for w in data["prompt_input_values"]]
            length = max(len(w) for w in waves)
            out["prompt_input_values"] = torch.stack([torch.nn.functional.pad(w, (0, length - len(w))) for w in waves])[:, None]
            out["prompt_padding_mask"] = torch.stack([torch.arange(length) < len(w) for w in waves]).long()
        return BatchFeature(out)

    # -- serialisation -----------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, remote_code: bool = True, **kwargs):
        """Save the tokenizer files and ``processor_config.json``; by default also the Hub remote
        code (transformers copies this module, the tokenizer's and what they import relatively, and
        writes ``auto_map``). ``remote_code=False`` saves files only (the bundled demos)."""
        if remote_code:
            return super().save_pretrained(save_directory, **kwargs)
        if without_remote_code is None:
            raise RuntimeError("save_pretrained(remote_code=False) needs the installed ella-v-hf package (pip install ella-v-hf).")
        for obj in (self, self.tokenizer):
            if hasattr(obj, "init_kwargs"):
                obj.init_kwargs.pop("auto_map", None)
        with without_remote_code((self, self.tokenizer)):
            return super().save_pretrained(save_directory, **kwargs)


def _is_single_audio(audio) -> bool:
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        return audio.ndim == 1 or (audio.ndim == 2 and min(audio.shape) <= 8)
    return False


def _pad(rows: list[torch.Tensor], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), value, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


EllaVProcessor.register_for_auto_class()

__all__ = ["EllaVProcessor", "continuation_drops_boundary"]
