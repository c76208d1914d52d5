"""The latents a TTS checkpoint's codec decodes at synthesis time, made from real speech.

At synthesis the codec's decoder never sees a true encoding: it reads the first level's vector
plus, for codebooks 2..K, the expected vectors of the NAR's distributions (``nar_decoding=
"expected"``), which are blurred wherever the NAR is unsure. A decoder trained on true codes only
has never seen such latents. :func:`nar_latents` makes them for a corpus — the true first
codebook, the NAR's codebooks 2..K given it and the aligned phonemes, decoded as synthesis
decodes them — so that ``ella-v train-codec`` (``nar_fraction``) can fine-tune the decoder on
what it will be given, as Tacotron's vocoders are fine-tuned on ground-truth-aligned predictions.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from ..modeling.codec_learned import EllaVCodecModel
    from ..modeling.modeling_ella_v_tts import EllaVForTextToSpeech


def check_tts_checkpoint(path: str | os.PathLike) -> None:
    """Refuse ``path`` unless its ``config.json`` is an ``EllaVForTextToSpeech`` checkpoint's (read
    without loading any weights).

    Raises:
        ValueError: ``path`` holds no TTS checkpoint (e.g. a codec directory).
    """
    from ..modeling.modeling_ella_v_tts import EllaVTTSConfig

    config_file = Path(path) / "config.json"
    model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type") if config_file.is_file() else None
    if model_type != EllaVTTSConfig.model_type:
        raise ValueError(f"{path} holds {'no model' if model_type is None else f'a {model_type!r} model'}, not an ELLA-V/VALL-E TTS "
                         "checkpoint whose NAR gives codebooks 2..K: nar_fraction needs init_from to be one (e.g. a bundled demo)")


def load_tts_with_nar(path: str | os.PathLike) -> EllaVForTextToSpeech:
    """The ``EllaVForTextToSpeech`` checkpoint at ``path`` in float32 eval mode.

    Raises:
        ValueError: ``path`` holds no TTS checkpoint (:func:`check_tts_checkpoint`).
    """
    from ..modeling.modeling_ella_v_tts import EllaVForTextToSpeech

    check_tts_checkpoint(path)
    return EllaVForTextToSpeech.from_pretrained(path).float().eval()


def prepared_rows(alignments: str | os.PathLike) -> tuple[dict[str, tuple[list[int], list[int]]], object]:
    """``({utterance id: (phoneme ids, durations)}, tokenizer)`` of an ``ella-v prepare`` output.

    Raises:
        ValueError: ``alignments`` is not a prepared corpus.
    """
    from datasets import load_from_disk

    from ..processing import EllaVProcessor

    folder = Path(alignments)
    if not (folder / "dataset").is_dir() or not (folder / "processor").is_dir():
        raise ValueError(f"{folder} is not an `ella-v prepare` output (no dataset/ and processor/): it holds the alignments")
    tokenizer = EllaVProcessor.from_pretrained(folder / "processor").tokenizer
    dataset = load_from_disk(str(folder / "dataset")).select_columns(["id", "phoneme_ids", "durations"])
    return {row["id"]: (row["phoneme_ids"], row["durations"]) for row in dataset}, tokenizer


@torch.no_grad()
def nar_latents(
    tts: EllaVForTextToSpeech,
    codec: EllaVCodecModel,
    utterances: list,
    features: list[np.ndarray],
    frame_labels: list[np.ndarray],
    rows: dict[str, tuple[list[int], list[int]]],
    progress: bool = True,
) -> list[np.ndarray | None]:
    """Per utterance, the latents synthesis would decode if the GAR had generated its true first codebook.

    Args:
        tts: An ``EllaVForTextToSpeech`` whose NAR predicts codebooks 2..K of ``codec``'s codes.
        codec: The learned codec being fine-tuned (its encoder and quantiser are the ones ``tts``
            was trained on).
        utterances: The corpus's utterances (``.id``).
        features: Their normalised log-mel ``[T_mel, n_mels]``.
        frame_labels: Their aligned phoneme index per log-mel frame ``[T_mel]`` (``-100`` where
            the utterance has no alignment), as :func:`~.train_codec.frame_phoneme_labels` gives.
        rows: :func:`prepared_rows`' phoneme ids per utterance id.
        progress: Show a progress bar.

    Returns:
        Per utterance ``[T_mel // downsample, codebook_dim]`` float32 latents (the first level's
        true vector plus the expected vectors of the NAR's codebooks 2..K), or ``None`` for an
        utterance without an alignment.
    """
    space = tts.config.gar_config.token_space
    aligned_input = tts.config.nar_config.frame_phonemes
    down = codec.config.downsample
    out: list[np.ndarray | None] = []
    for utterance, feature, labels in tqdm(list(zip(utterances, features, frame_labels)), desc="NAR latents",
                                           disable=not progress, file=sys.stderr):
        usable = len(feature) // down * down
        if utterance.id not in rows or usable == 0 or (labels[:usable] < 0).any():
            out.append(None)
            continue
        x = torch.from_numpy(np.ascontiguousarray(feature[:usable]))[None]  # [1, T_mel, n_mels]
        codes = codec.quantizer.quantize(codec.latents(x))  # [1, K, T]
        phoneme_ids = space.phoneme_tensor(rows[utterance.id][0])[None]  # [1, Lp]
        aligned = space.phoneme_tensor(labels[:usable:down].tolist())[None] if aligned_input else None  # [1, T]
        completed, probabilities = tts.nar.decode_codebooks(
            phoneme_ids, codes[:, 0], frame_phoneme_ids=aligned, return_probabilities=True
        )  # [1, K, T], [1, K - 1, T, C]
        out.append(codec.quantizer.dequantize(completed, probabilities)[0].float().numpy())  # [T, D]
    return out


__all__ = ["check_tts_checkpoint", "load_tts_with_nar", "nar_latents", "prepared_rows"]
