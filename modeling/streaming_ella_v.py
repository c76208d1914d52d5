"""Streaming synthesis: audio chunks while the GAR is still generating.

ELLA-V suits streaming: every EOP marks a finished phoneme while the GAR runs. The model passes a
:class:`GarTokenWatcher` to the GAR's stock ``generate(streamer=...)``; after each EOP (VALL-E:
every ``chunk_frames`` frames) that leaves at least ``chunk_frames`` new frames with
``right_context`` frames generated after them, those frames go through the NAR (over everything
generated so far, so its bidirectional attention sees the same left context as one-shot decoding)
and the codec (a window with ``left_context`` frames before them), and the waveform is handed to the
user's :class:`EllaVAudioStreamer`. Consecutive chunks overlap by one frame, cross-faded, which hides
the phase jumps of per-chunk Griffin-Lim. The joined stream is what ``generate()`` returns as audio.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

from .sequence_layout import LayoutSpec, TokenSpace, parse_gar_sequence


class EllaVAudioStreamer(BaseStreamer):
    """Receives audio from ``EllaVForTextToSpeech.generate(streamer=...)`` as it is made.

    Either pass ``on_audio`` (called with each chunk, in the generating thread), or iterate over the
    streamer in another thread while ``generate()`` runs, as with transformers'
    ``TextIteratorStreamer``. Chunks are float32 numpy arrays ``[S]`` at ``sampling_rate`` (set by
    the model when generation starts).

    Args:
        on_audio: Optional callback ``(chunk: np.ndarray) -> None``.
        chunk_frames: Fewest new codec frames per chunk (smaller: earlier first audio, more chunks).
        left_context / right_context: Codec frames decoded around each chunk (and, on the right,
            generated after it before it is decoded) so that the joined stream matches one-shot
            decoding closely.
        timeout: Seconds the iterator waits for the next chunk before ``queue.Empty``.

    Attributes:
        sampling_rate: Rate of the chunks (int).
        first_audio_seconds: Seconds from the start of ``generate()`` to the first chunk.
        chunks: Number of chunks delivered.

    Example:

    ```python
    >>> from threading import Thread
    >>> streamer = EllaVAudioStreamer()  # doctest: +SKIP
    >>> Thread(target=model.generate, kwargs=dict(**inputs, streamer=streamer)).start()  # doctest: +SKIP
    >>> for chunk in streamer:  # doctest: +SKIP
    ...     play(chunk, streamer.sampling_rate)
    ```
    """

    def __init__(
        self,
        on_audio: Callable[[np.ndarray], None] | None = None,
        chunk_frames: int = 8,
        left_context: int = 16,
        right_context: int = 4,
        timeout: float | None = None,
    ) -> None:
        if chunk_frames < 1 or left_context < 1 or right_context < 0:
            raise ValueError(
                f"chunk_frames and left_context must be >= 1 and right_context >= 0, got {chunk_frames}, {left_context}, {right_context}"
            )
        self.on_audio = on_audio
        self.chunk_frames, self.left_context, self.right_context = int(chunk_frames), int(left_context), int(right_context)
        self.timeout = timeout
        self.sampling_rate: int | None = None
        self.first_audio_seconds: float | None = None
        self.chunks = 0
        self._queue: queue.Queue = queue.Queue()
        self._started: float | None = None
        self._stop = object()

    def start(self, sampling_rate: int) -> None:
        """Called by the model when generation starts."""
        self.sampling_rate = int(sampling_rate)
        self._started = time.perf_counter()
        self.first_audio_seconds = None
        self.chunks = 0

    def put(self, value: np.ndarray) -> None:
        """Deliver one audio chunk ``[S]`` (called by the model)."""
        if self.first_audio_seconds is None and self._started is not None:
            self.first_audio_seconds = time.perf_counter() - self._started
        self.chunks += 1
        if self.on_audio is not None:
            self.on_audio(value)
        else:
            self._queue.put(value)

    def end(self) -> None:
        """Generation finished (called by the model)."""
        if self.on_audio is None:
            self._queue.put(self._stop)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        value = self._queue.get(timeout=self.timeout)
        if value is self._stop:
            raise StopIteration
        return value


class GarTokenWatcher(BaseStreamer):
    """The streamer the TTS model gives the GAR's stock ``generate()`` (batch size 1).

    It collects the GAR's tokens and, at phoneme ends, decodes the frames that are ready with
    ``decode_codes`` (first-codebook frames ``[T]`` -> codes ``[K, T]`` by the NAR) and
    ``decode_audio`` (codes -> waveform), passing the waveform to ``audio_streamer``.

    Args:
        audio_streamer: The user's :class:`EllaVAudioStreamer`.
        space / spec: The GAR's token space and layout.
        prompt_frames: Frames of the acoustic prompt (not streamed).
        decode_codes: ``(first [T], parsed) -> (codes [K, T], probabilities [K - 1, T, C] | None)``
            (the NAR pass of the model; the NAR's distributions for ``nar_decoding="expected"``).
        decode_audio: ``(codes [K, T'], probabilities [K - 1, T', C] | None, first_probabilities
            [T', C_1] | None) -> waveform [S']`` (the codec).
        samples_per_frame: Waveform samples per codec frame.
        first_probabilities: Optional ``(generated tokens) -> [T, C_1]``: the distributions the
            generated frames' first-level codes were drawn from (``first_level_decoding="expected"``).
    """

    def __init__(
        self,
        audio_streamer: EllaVAudioStreamer,
        space: TokenSpace,
        spec: LayoutSpec,
        prompt_frames: int,
        decode_codes: Callable,
        decode_audio: Callable[[torch.LongTensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor],
        samples_per_frame: int,
        first_probabilities: Callable[[list[int]], torch.Tensor] | None = None,
    ) -> None:
        self.out, self.space, self.spec = audio_streamer, space, spec
        self.first_probabilities = first_probabilities
        self.prompt_tokens = 0  # tokens of the GAR's input (the first put)
        self.prompt_frames = prompt_frames
        self.decode_codes, self.decode_audio = decode_codes, decode_audio
        self.hop = int(samples_per_frame)
        self.tokens: list[int] = []
        self.frames = 0  # generated frames (prompt excluded)
        self.ready = 0  # frames that end a closed phoneme (ELLA-V) or every frame (VALL-E)
        self.emitted = 0  # frames whose audio is out, except the last overlap frame held in `tail`
        self.tail = np.zeros(0, dtype=np.float32)  # audio of the last emitted frame, to cross-fade
        self.pieces: list[np.ndarray] = []
        self.codes: torch.LongTensor | None = None

    def put(self, value: torch.Tensor) -> None:
        ids = value.reshape(-1).tolist()
        if not self.tokens:  # the prompt: nothing to stream yet
            self.tokens, self.prompt_tokens = ids, len(ids)
            return
        for token in ids:
            self.tokens.append(token)
            if self.space.is_acoustic(token):
                self.frames += 1
                if not self.spec.interleaved:
                    self.ready = self.frames
            elif token == self.space.EOP:
                self.ready = self.frames
        if min(self.ready, self.frames - self.out.right_context) - self.emitted >= self.out.chunk_frames:
            self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)
        self.out.end()

    def _emit(self, final: bool) -> None:
        parsed = parse_gar_sequence(self.tokens, self.space, self.spec, strict=False)
        first = torch.tensor(parsed.codes[self.prompt_frames :], dtype=torch.long)
        if first.numel() == 0:
            return
        codes, probabilities = self.decode_codes(first, parsed)  # [K, T], [K - 1, T, C] | None: NAR over all frames
        total = codes.shape[-1]
        if final:
            self.codes = codes
        end = total if final else min(self.ready, total - self.out.right_context)
        if end <= self.emitted:
            if final and self.tail.size:  # nothing new: flush the held-back frame
                self.pieces.append(self.tail)
                self.out.put(self.tail)
                self.tail = np.zeros(0, dtype=np.float32)
            return
        overlap = 1 if self.emitted > 0 else 0  # the frame held back from the last chunk
        start = self.emitted - overlap
        window = max(0, start - self.out.left_context)
        right = total if final else min(total, end + self.out.right_context)
        window_probabilities = None if probabilities is None else probabilities[:, window:right]
        first = None
        if self.first_probabilities is not None:
            first = self.first_probabilities(self.tokens[self.prompt_tokens :])[window:right].to(codes.device)  # [T', C_1]
        wave = self.decode_audio(codes[:, window:right], window_probabilities, first).detach().float().cpu().numpy().reshape(-1)
        piece = wave[(start - window) * self.hop : (end - window) * self.hop]
        if overlap and self.tail.size:
            fade = np.linspace(0.0, 1.0, self.tail.size, dtype=np.float32)
            piece = piece.copy()
            piece[: self.tail.size] = self.tail * (1 - fade) + piece[: self.tail.size] * fade
        if final:
            chunk, self.tail = piece, np.zeros(0, dtype=np.float32)
        else:  # hold back the last frame to cross-fade it with the next chunk's decode
            chunk, self.tail = piece[: -self.hop], piece[-self.hop :].copy()
        self.emitted = end
        if chunk.size:
            self.pieces.append(chunk)
            self.out.put(chunk)

    @property
    def audio(self) -> np.ndarray:
        """Everything streamed, joined: ``[S]``."""
        return np.concatenate(self.pieces) if self.pieces else np.zeros(0, dtype=np.float32)


__all__ = ["EllaVAudioStreamer", "GarTokenWatcher"]
