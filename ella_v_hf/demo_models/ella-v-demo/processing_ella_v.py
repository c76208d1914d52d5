"""EllaVProcessor: text (+ optional prompt audio and its transcript) -> model inputs, codes -> waveform.

It holds the phoneme tokenizer (a transformers sub-processor), the built-in aligner (so a user's
prompt audio is aligned at synthesis time) and optionally the codec (for prompt codes and
``decode``). ``save_pretrained`` writes the tokenizer files, ``processor_config.json``, and the
aligner (``aligner/``) and embedded codec (``codec/``) as safetensors; an EnCodec codec is
stored by name (``codec_name_or_path``) instead of duplicating its weights.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .aligner import EllaVAlignerModel
from .audio import AudioError, prepare_waveform
from .codecs import AudioCodec, EncodecCodec, MelCodec

logger = logging.get_logger(__name__)

AudioInput = np.ndarray | torch.Tensor


class EllaVProcessor(ProcessorMixin):
    """Processor for ELLA-V text-to-speech.

    Args:
        tokenizer: An :class:`~ella_v_hf.processing.EllaVPhonemeTokenizer`.
        aligner: An :class:`~ella_v_hf.processing.EllaVAlignerModel` (needed for prompt audio).
        codec: An :class:`~ella_v_hf.processing.AudioCodec` (needed for prompt codes and ``decode``).
        min_prompt_seconds: Shortest usable prompt.
        silence_dbfs: A prompt whose RMS level is below this (dBFS) counts as silent.
        codec_name_or_path: Where an EnCodec codec is loaded from (set automatically).

    Example:

    ```python
    >>> processor = EllaVProcessor(tokenizer, aligner=aligner, codec=codec)  # doctest: +SKIP
    >>> inputs = processor("Target text.", prompt_audio=wav, prompt_text="What the prompt says.", sampling_rate=16000)  # doctest: +SKIP
    >>> sorted(inputs)  # doctest: +SKIP
    ['attention_mask', 'input_ids', 'prompt_attention_mask', 'prompt_codes', 'prompt_durations', 'prompt_input_ids']
    ```
    """

    def __init__(
        self,
        tokenizer,
        aligner: EllaVAlignerModel | None = None,
        codec: AudioCodec | None = None,
        min_prompt_seconds: float = 0.5,
        silence_dbfs: float = -55.0,
        codec_name_or_path: str | None = None,
    ) -> None:
        self.aligner = aligner
        self.codec = codec
        self.min_prompt_seconds = min_prompt_seconds
        self.silence_dbfs = silence_dbfs
        self.codec_name_or_path = codec_name_or_path
        if aligner is not None and codec is not None and abs(aligner.config.frame_rate - codec.frame_rate) > 1e-6:
            raise ValueError(
                f"The aligner works at {aligner.config.frame_rate} frames/s but the codec at {codec.frame_rate}: "
                "durations must be in codec frames."
            )
        super().__init__(tokenizer)

    # -- text --------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str],
        prompt_audio: AudioInput | Sequence[AudioInput] | None = None,
        prompt_text: str | Sequence[str] | None = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        check_alignment: bool = True,
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
            check_alignment: Refuse prompts whose transcript does not match the audio.

        Returns:
            ``BatchFeature`` with ``input_ids``/``attention_mask`` ``[B, L]`` (target phoneme ids,
            right-padded) and, with a prompt, ``prompt_input_ids``/``prompt_attention_mask``
            ``[B, Lp]``, ``prompt_durations`` ``[B, Lp]`` (codec frames per prompt token, 0 on
            padding), ``prompt_num_frames`` ``[B]`` and, with a codec, ``prompt_codes`` ``[B, K, Tp]``
            (0 on padding).

        Raises:
            ValueError: Bad text, or a prompt that is silent, too short, not audio, or does not
                match its transcript (the message says which).
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
            if len(audios) == 1 and len(texts) > 1:
                audios, prompt_texts = audios * len(texts), prompt_texts * len(texts)
            if not (len(audios) == len(prompt_texts) == len(texts)):
                raise ValueError(
                    f"Got {len(texts)} texts, {len(audios)} prompt audios and {len(prompt_texts)} prompt texts."
                )
            prompts = [self.prepare_prompt(a, sampling_rate, t, check_alignment) for a, t in zip(audios, prompt_texts)]
            data["prompt_input_ids"] = [p["input_ids"] for p in prompts]
            data["prompt_durations"] = [p["durations"] for p in prompts]
            data["prompt_num_frames"] = [sum(p["durations"]) for p in prompts]
            if self.codec is not None:
                data["prompt_codes"] = [p["codes"] for p in prompts]
        return self._to_batch(data, return_tensors)

    def prepare_prompt(self, audio: AudioInput, sampling_rate: int, text: str, check_alignment: bool = True) -> dict:
        """Condition, check, align (and encode) one prompt.

        Returns:
            ``{"input_ids", "durations", "waveform"[, "codes" [K, T]]}``.
        """
        if self.aligner is None:
            raise ValueError("This processor has no aligner, so it cannot use prompt audio.")
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        target_rate = self.aligner.config.sampling_rate
        try:
            waveform = prepare_waveform(np.asarray(audio), int(sampling_rate), target_rate, name="prompt audio")
        except (TypeError, ValueError) as error:
            raise ValueError(f"Prompt audio is not usable audio: {error}") from error
        seconds = len(waveform) / target_rate
        if seconds < self.min_prompt_seconds:
            raise AudioError(f"Prompt audio is {seconds:.2f} s long; at least {self.min_prompt_seconds} s is needed.")
        level = 20 * np.log10(np.sqrt(np.mean(np.square(waveform))) + 1e-12)
        if level < self.silence_dbfs:
            raise AudioError(f"Prompt audio is silent (RMS {level:.1f} dBFS < {self.silence_dbfs} dBFS).")
        if np.mean(np.abs(waveform) >= 0.999) > 0.01:
            logger.warning("Prompt audio is clipped (over 1% of samples at full scale); quality may suffer.")
        ids = self.tokenizer.batch_encode_phonemes([text])[0]
        alignment = self.aligner.align(waveform, ids, check=check_alignment)
        out = {"input_ids": ids, "durations": alignment.durations, "waveform": waveform}
        if self.codec is not None:
            codes = self.codec.encode(waveform, target_rate)
            if codes.shape[-1] != sum(alignment.durations):
                raise ValueError(
                    f"Codec gave {codes.shape[-1]} frames but the alignment covers {sum(alignment.durations)}: "
                    "the aligner and codec frontends disagree."
                )
            out["codes"] = codes
        return out

    def _to_batch(self, data: dict[str, list], return_tensors: str | None) -> BatchFeature:
        if return_tensors is None:
            return BatchFeature(data)
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        out: dict[str, torch.Tensor] = {}
        for key, mask_key in (("input_ids", "attention_mask"), ("prompt_input_ids", "prompt_attention_mask")):
            if key in data:
                out[key], out[mask_key] = _pad([torch.tensor(x) for x in data[key]], self.tokenizer.pad_token_id)
        if "prompt_durations" in data:
            out["prompt_durations"], _ = _pad([torch.tensor(x) for x in data["prompt_durations"]], 0)
            out["prompt_num_frames"] = torch.tensor(data["prompt_num_frames"])
        if "prompt_codes" in data:
            codes = data["prompt_codes"]
            length = max(c.shape[-1] for c in codes)
            out["prompt_codes"] = torch.stack([torch.nn.functional.pad(c, (0, length - c.shape[-1])) for c in codes])
        return BatchFeature(out)

    # -- audio -------------------------------------------------------------------------------
    def decode(self, codes: torch.LongTensor) -> np.ndarray:
        """Codes ``[K, T]`` -> waveform ``[S]`` at the codec's sampling rate."""
        if self.codec is None:
            raise ValueError("This processor has no codec to decode with.")
        return self.codec.decode(codes)

    def batch_decode(self, codes: Sequence[torch.LongTensor]) -> list[np.ndarray]:
        return [self.decode(c) for c in codes]

    def phonemes(self, ids: Sequence[int]) -> str:
        """Phoneme ids -> space-separated symbols."""
        return self.tokenizer.decode(ids)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        saved = {}
        for name in ("aligner", "codec"):
            saved[name] = self.__dict__.pop(name)
        try:
            output = super().to_dict()
        finally:
            self.__dict__.update(saved)
        return output

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Save tokenizer, processor config, aligner and embedded codec, plus the processing code
        as flat remote-code files (``AutoProcessor.from_pretrained(dir, trust_remote_code=True)``)."""
        if isinstance(self.codec, EncodecCodec) and self.codec_name_or_path is None:
            self.codec_name_or_path = getattr(self.codec.model, "name_or_path", None)
        result = super().save_pretrained(save_directory, **kwargs)
        _export_remote_code(Path(save_directory))
        if self.aligner is not None:
            self.aligner.save_pretrained(Path(save_directory) / "aligner")
        if isinstance(self.codec, MelCodec):
            self.codec.save_pretrained(str(Path(save_directory) / "codec"))
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        root = Path(pretrained_model_name_or_path)
        if (root / "aligner" / "config.json").is_file():
            processor.aligner = EllaVAlignerModel.from_pretrained(root / "aligner").eval()
        if (root / "codec" / "config.json").is_file():
            processor.codec = MelCodec.from_pretrained(str(root / "codec"))
        elif processor.codec_name_or_path:
            processor.codec = EncodecCodec.from_pretrained(processor.codec_name_or_path)
        return processor


#: Files the processor needs as remote code, copied flat next to processor_config.json.
_REMOTE_FILES = (
    "processing_ella_v.py",
    "aligner.py",
    "audio.py",
    "codecs.py",
    "tokenization_ella_v.py",
    "text_normalization.py",
    "../modeling/codec_mel.py",
)


def _export_remote_code(directory: Path) -> None:
    """Copy the processing code flat into ``directory`` (cross-folder imports made sibling
    imports) and point ``auto_map`` at it."""
    here = Path(__file__).parent
    for name in _REMOTE_FILES:
        source = (here / name).read_text(encoding="utf-8")
        source = re.sub(r"from \.\.(?:modeling|processing)\.(\w+) import", r"from .\1 import", source)
        (directory / Path(name).name).write_text(source, encoding="utf-8")
    config_path = directory / "processor_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config["processor_class"] = "EllaVProcessor"
    config["auto_map"] = {"AutoProcessor": "processing_ella_v.EllaVProcessor"}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


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


__all__ = ["EllaVProcessor"]
