"""High-level synthesis: long text split into sentences, synthesised as one batch, joined with pauses.

Limit: each sentence is one GAR sequence; a single sentence longer than
``MAX_SENTENCE_PHONEMES`` phoneme tokens is further split at commas, then at word boundaries.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .hub import check_checkpoint
from .modeling import EllaVForTextToSpeech, parse_gar_sequence
from .modeling.decode_weights import DECODE_WEIGHT_DTYPES
from .processing import EllaVProcessor

#: Longest phoneme sequence synthesised as one GAR sequence (longer sentences are split).
MAX_SENTENCE_PHONEMES = 200
#: Sentences generated together in one batch (long texts run in several batches).
SENTENCES_PER_BATCH = 16
#: Where the bundled demo checkpoint lives (package data; `ella-v assemble` output of training/recipes/demo.sh).
DEMO_MODEL_DIR = Path(__file__).parent / "demo_models" / "ella-v-demo"


@dataclass
class SynthesisResult:
    """A synthesised waveform and what happened while generating it."""

    audio: np.ndarray  # [S] float32
    sampling_rate: int
    sentences: list[str]
    cuts: int  # EOPs forced by the frame cap
    infinite: int  # rows that hit the length cap (VALL-E)
    segments: list[tuple[str, float, float]]  # (phoneme symbol, start s, end s) of generated speech (ELLA-V)


def _token_counts(tokenizer, texts: list[str]) -> list[int]:
    """Phoneme tokens of each text (one batched espeak call; 0 for a text with nothing to say)."""
    try:
        return [len(ids) for ids in tokenizer.batch_encode_phonemes(texts)]
    except ValueError:  # some text is unpronounceable on its own (e.g. a lone dash): count one by one
        counts = []
        for text in texts:
            try:
                counts.append(len(tokenizer.batch_encode_phonemes([text])[0]))
            except ValueError:
                counts.append(0)
        return counts


def split_sentences(text: str, tokenizer=None, max_phonemes: int = MAX_SENTENCE_PHONEMES) -> list[str]:
    """Split at sentence punctuation; a sentence over ``max_phonemes`` tokens is cut between words,
    at its last comma when the words after it fit in the next piece. Word costs are counted one
    word at a time, so a piece can exceed ``max_phonemes`` by a few tokens of context effects.

    Phonemisation is batched (one espeak call for the sentences, one per over-long sentence), so a
    10,000-word text splits in about a second.
    """
    parts = [p.strip() for p in re.split(r"(?<=[.!?…;])\s+", text.strip()) if p.strip()]
    if tokenizer is None:
        return parts
    out: list[str] = []
    for part, count in zip(parts, _token_counts(tokenizer, parts)):
        if count <= max_phonemes:
            out.append(part)
            continue
        words = part.split()
        # Each word alone is "| w sep": its share of a longer sequence is one token less.
        costs = [max(c - 1, 0) for c in _token_counts(tokenizer, words)]
        chunk: list[tuple[str, int]] = []  # (word, cost)
        for word, cost in zip(words, costs):
            if chunk and 1 + sum(c for _, c in chunk) + cost > max_phonemes:
                commas = [
                    i for i, (w, _) in enumerate(chunk[:-1])
                    if w.endswith(",") and 1 + sum(c for _, c in chunk[i + 1 :]) + cost <= max_phonemes
                ]
                keep = commas[-1] + 1 if commas else len(chunk)
                out.append(" ".join(w for w, _ in chunk[:keep]))
                chunk = chunk[keep:]
            chunk.append((word, cost))
        if chunk:
            out.append(" ".join(w for w, _ in chunk))
    return out


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """The model directory to use (default: the bundled demo checkpoint).

    Raises:
        FileNotFoundError: When no model is given and no demo checkpoint is bundled, or the
            directory lacks a file a checkpoint needs.
        ValueError: When the weights file is truncated or corrupt.
    """
    if model is not None:
        return check_checkpoint(model)
    if not (DEMO_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            "No demo checkpoint is bundled with this installation yet; pass --model DIR "
            "(an EllaVForTextToSpeech directory saved with its processor)."
        )
    return DEMO_MODEL_DIR


def load_checkpoint(model: str | os.PathLike | None = None) -> tuple[EllaVForTextToSpeech, EllaVProcessor]:
    """Load a checkpoint directory (default: the bundled demo) with its processor, in eval mode.

    Raises:
        FileNotFoundError / ValueError: See :func:`resolve_model_dir`.
        ValueError: The processor does not fit the model (vocabulary size or sampling rate).
    """
    model_dir = resolve_model_dir(model)
    tts = EllaVForTextToSpeech.from_pretrained(model_dir).eval()
    processor = EllaVProcessor.from_pretrained(model_dir)
    try:
        tts.config.check_tokenizer(processor.tokenizer)
    except ValueError as error:
        raise ValueError(f"{model_dir}: {error}") from error
    if processor.sampling_rate != tts.config.sampling_rate:
        raise ValueError(
            f"{model_dir}: the processor resamples prompts to {processor.sampling_rate} Hz but the model's codec runs at {tts.config.sampling_rate} Hz."
        )
    return tts, processor


#: ``--decode-weights`` choices: the checkpoint's ``decode_weight_dtype``, or one for this run.
DECODE_WEIGHT_CHOICES = ("checkpoint", "float32", *DECODE_WEIGHT_DTYPES)


def set_decode_weights(model: EllaVForTextToSpeech, choice: str = "checkpoint") -> str | None:
    """Set the GAR's ``decode_weight_dtype`` for this run (``"float32"``: none, exact float32
    decoding) unless ``choice`` is ``"checkpoint"``; returns the value in effect."""
    if choice not in DECODE_WEIGHT_CHOICES:
        raise ValueError(f"decode weights must be one of {DECODE_WEIGHT_CHOICES}, got {choice!r}")
    if choice != "checkpoint":
        model.gar.config.decode_weight_dtype = None if choice == "float32" else choice
    return model.gar.config.decode_weight_dtype


#: The largest seed ``torch.manual_seed`` takes.
MAX_SEED = 2**63 - 1


def check_seed(seed: int) -> int:
    """``seed`` if it is a whole number in ``0 .. 2**63 - 1``; otherwise a ``ValueError`` saying so."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return seed


def default_threads() -> int:
    """Torch threads for synthesis on a CPU: half the cores, 1 to 4.

    The model is small, so its per-step work does not spread well over many threads, and on a busy
    machine torch's default (every core) oversubscribes it and runs many times slower.
    """
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (``None``: :func:`default_threads`); returns the number.

    Raises:
        ValueError: ``threads`` below 1.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    return threads


def synthesize_stream(
    model: EllaVForTextToSpeech,
    processor: EllaVProcessor,
    text: str,
    on_audio,
    prompt_audio: np.ndarray | None = None,
    prompt_text: str | None = None,
    prompt_sampling_rate: int | None = None,
    seed: int | None = None,
    chunk_frames: int = 8,
    **generate_kwargs,
) -> tuple[SynthesisResult, float | None]:
    """Like :func:`synthesize`, but audio is handed to ``on_audio(chunk [S] float32)`` as it is made:
    sentence after sentence, each streamed while its GAR runs, with the sentence pause between them.

    Returns:
        ``(result, first_audio_seconds)``: the joined result (as :func:`synthesize` returns it) and
        the seconds from the call to the first chunk.
    """
    from .modeling import EllaVAudioStreamer

    sentences = split_sentences(text, processor.tokenizer)
    if not sentences:
        raise ValueError("Text is empty or whitespace only; nothing to synthesise.")
    if seed is not None:
        torch.manual_seed(check_seed(seed))
    started, first = time.perf_counter(), None
    rate = model.config.sampling_rate
    pause = np.zeros(int(_pause_seconds(model) * rate), dtype=np.float32)
    pieces, cuts, infinite, segments = [], 0, 0, []

    def deliver(chunk: np.ndarray) -> None:
        nonlocal first
        if first is None:
            first = time.perf_counter() - started
        chunk = np.clip(chunk, -0.99, 0.99).astype(np.float32)  # no normalisation possible before the end
        pieces.append(chunk)
        on_audio(chunk)

    for i, sentence in enumerate(sentences):
        if i:
            deliver(pause)
        inputs = processor([sentence], prompt_audio=prompt_audio, prompt_text=prompt_text, sampling_rate=prompt_sampling_rate)
        offset = sum(len(p) for p in pieces) / rate
        generated = model.generate(**inputs, streamer=EllaVAudioStreamer(on_audio=deliver, chunk_frames=chunk_frames), **generate_kwargs)
        segments += phone_segments(model, processor, generated.sequences[0], int(generated.prompt_frames[0]), offset)
        cuts += int(generated.cuts[0])
        infinite += int(generated.infinite[0])
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return SynthesisResult(audio=audio, sampling_rate=rate, sentences=sentences, cuts=cuts, infinite=infinite, segments=segments), first


def phone_segments(model: EllaVForTextToSpeech, processor: EllaVProcessor, sequence: torch.Tensor, prompt_frames: int,
                   offset: float = 0.0) -> list[tuple[str, float, float]]:
    """``(phoneme symbol, start s, end s)`` of the generated speech, read from an ELLA-V GAR
    sequence (each phoneme token owns the frames up to its EOP); empty for VALL-E."""
    gar = model.config.gar_config
    if not gar.layout_spec.interleaved:
        return []
    frame_seconds = 1.0 / gar.frame_rate
    parsed = parse_gar_sequence(sequence.tolist(), gar.token_space, gar.layout_spec, strict=False)
    segments, position = [], -prompt_frames
    for phoneme, count in zip(parsed.phonemes, parsed.frame_counts):
        start, position = position, position + count
        if position > 0:
            symbol = processor.tokenizer.convert_ids_to_tokens(phoneme)
            segments.append((symbol, offset + max(start, 0) * frame_seconds, offset + position * frame_seconds))
    return segments


def _pause_seconds(model: EllaVForTextToSpeech) -> float:
    """The pause between sentences: the generation config's, else the model config's."""
    value = getattr(model.generation_config, "sentence_pause_seconds", None)
    return model.config.sentence_pause_seconds if value is None else float(value)


def synthesize(
    model: EllaVForTextToSpeech,
    processor: EllaVProcessor,
    text: str,
    prompt_audio: np.ndarray | None = None,
    prompt_text: str | None = None,
    prompt_sampling_rate: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    **generate_kwargs,
) -> SynthesisResult:
    """Synthesise ``text`` (any length): sentences in batches of ``SENTENCES_PER_BATCH``, joined with short pauses.

    Args:
        model: The text-to-speech model.
        processor: Its processor.
        text: Text to speak.
        prompt_audio / prompt_text / prompt_sampling_rate: Optional voice prompt and its transcript.
        seed: Seed for sampling.
        progress: Show a progress bar when the text needs more than one batch.
        generate_kwargs: ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``max_frames_per_phone``.
    """
    sentences = split_sentences(text, processor.tokenizer)
    if not sentences:
        raise ValueError("Text is empty or whitespace only; nothing to synthesise.")
    if seed is not None:
        torch.manual_seed(check_seed(seed))
    outputs = []
    starts = range(0, len(sentences), SENTENCES_PER_BATCH)
    for start in tqdm(starts, desc=f"synthesise {len(sentences)} sentences", unit="batch", disable=not progress or len(starts) < 2):
        chunk = sentences[start : start + SENTENCES_PER_BATCH]
        inputs = processor(chunk, prompt_audio=prompt_audio, prompt_text=prompt_text, sampling_rate=prompt_sampling_rate)
        generated = model.generate(**inputs, **generate_kwargs)
        frames = generated.prompt_frames.tolist()
        for i in range(len(chunk)):
            length = int(generated.audio_lengths[i])
            outputs.append((generated.audio[i, :length], generated.sequences[i], frames[i], int(generated.cuts[i]), bool(generated.infinite[i])))
    rate = model.config.sampling_rate
    pause = np.zeros(int(_pause_seconds(model) * rate), dtype=np.float32)
    pieces, segments, offset = [], [], 0.0
    for i, (wave, sequence, prompt_frames, _, _) in enumerate(outputs):
        if i:
            pieces.append(pause)
            offset += len(pause) / rate
        pieces.append(wave.cpu().numpy().astype(np.float32))
        length = wave.shape[-1]
        segments += phone_segments(model, processor, sequence, prompt_frames, offset)
        offset += length / rate
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.99:  # keep WAV output unclipped
        audio = audio * (0.99 / peak)
    return SynthesisResult(
        audio=audio,
        sampling_rate=rate,
        sentences=sentences,
        cuts=sum(o[3] for o in outputs),
        infinite=sum(o[4] for o in outputs),
        segments=segments,
    )
