"""Built-in forced aligner (no MFA needed): per-token durations in codec frames.

The model half (this file: frontend, classifier, Viterbi) is a sub-model of
``EllaVForTextToSpeech``, which aligns a user's prompt audio with it; its training lives in
``ella_v_hf.processing.aligners.builtin``.

A small convolutional frame classifier over log-mel frames (at the codec's frame rate) is
trained on the corpus by Viterbi training from a flat start, the way HMM aligners such as MFA
bootstrap themselves: start from a uniform segmentation (leading/trailing silence found by
energy), train the classifier on it, re-align every utterance with Viterbi, and repeat.

Alignment is a monotonic left-to-right Viterbi over the token sequence: every phoneme owns at
least one frame, separator tokens (``| , . ? !``) may own any number of frames including none,
and every frame belongs to exactly one token, so durations always sum to the frame count. The
mean per-frame log-posterior of the best path scores the match between audio and transcript;
utterances scoring far below the corpus (``mismatch_threshold``) are flagged, not mis-aligned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from .loading import StrictLoadingMixin
from .mel import LogMel


class AlignmentError(ValueError):
    """An utterance that cannot be aligned (too short for its phonemes, or a transcript mismatch)."""


@dataclass
class Alignment:
    """Per-token frame counts (``sum == num_frames``) and the match score: the forced path's mean
    per-frame log-score minus that of the best unconstrained frame labelling (<= 0; near 0 when
    the transcript fits the audio, far below when it does not, whatever the recording quality)."""

    durations: list[int]
    score: float


class EllaVAlignerConfig(PreTrainedConfig):
    """Configuration of :class:`EllaVAlignerModel`.

    Args:
        vocab_size: Phoneme tokenizer vocabulary size.
        separator_ids: Tokenizer ids of the separator tokens (they share one "pause" class).
        sampling_rate / hop_length / n_fft / n_mels / f_max: Feature frontend; ``hop_length`` must
            make ``sampling_rate / hop_length`` the codec's frame rate. Bands stop at ``f_max``
            (4 kHz) so that narrow-band prompts (8 kHz telephone audio) align like wide-band ones.
        hidden_size / num_layers / kernel_size: Convolutional classifier.
        prior_scale: Weight of the class prior removed from posteriors (hybrid likelihoods).
        mismatch_threshold: Scores below this flag a transcript mismatch (set by training).
    """

    model_type = "ella_v_aligner"

    vocab_size: int = 65
    separator_ids: list[int] | None = None
    sampling_rate: int = 16000
    hop_length: int = 320
    n_fft: int = 1024
    n_mels: int = 64
    f_max: float = 4000.0
    hidden_size: int = 192
    num_layers: int = 3
    kernel_size: int = 5
    prior_scale: float = 0.5
    mismatch_threshold: float | None = None

    def __post_init__(self, **kwargs) -> None:
        if self.separator_ids is None:
            self.separator_ids = [2, 3, 4, 5, 6]
        if any(not 0 <= i < self.vocab_size for i in self.separator_ids):
            raise ValueError(f"separator_ids {self.separator_ids} outside the vocabulary of {self.vocab_size}")
        super().__post_init__(**kwargs)

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length


class EllaVAlignerModel(StrictLoadingMixin, PreTrainedModel):
    """Frame classifier used for forced alignment (see the module docstring)."""

    config_class = EllaVAlignerConfig
    main_input_name = "input_values"

    def __init__(self, config: EllaVAlignerConfig) -> None:
        super().__init__(config)
        self.frontend = LogMel(
            config.sampling_rate, config.n_fft, config.hop_length, config.n_mels, f_max=min(config.f_max, config.sampling_rate / 2)
        )
        layers: list[nn.Module] = []
        width = config.n_mels
        for _ in range(config.num_layers):
            layers += [nn.Conv1d(width, config.hidden_size, config.kernel_size, padding=config.kernel_size // 2), nn.GELU()]
            width = config.hidden_size
        self.encoder = nn.Sequential(*layers)
        self.classifier = nn.Linear(config.hidden_size, config.vocab_size)
        self.feature_mean = nn.Parameter(torch.zeros(config.n_mels), requires_grad=False)
        self.feature_std = nn.Parameter(torch.ones(config.n_mels), requires_grad=False)
        self.log_prior = nn.Parameter(torch.zeros(config.vocab_size), requires_grad=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            nn.init.zeros_(module.bias)
        elif module is self:
            with torch.no_grad():
                self.feature_mean.zero_()
                self.feature_std.fill_(1.0)
                self.log_prior.zero_()

    @property
    def pause_class(self) -> int:
        return self.config.separator_ids[0]

    def class_of(self, token_ids: Sequence[int]) -> list[int]:
        """Classifier class of each token: separators share the first separator's class."""
        separators = set(self.config.separator_ids)
        return [self.pause_class if t in separators else int(t) for t in token_ids]

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel ``[T, n_mels]`` of a mono waveform ``[S]`` at ``sampling_rate``."""
        return (self.frontend(waveform[None].float())[0] - self.feature_mean) / self.feature_std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised features ``[B, T, M]`` -> class logits ``[B, T, V]``."""
        return self.classifier(self.encoder(features.transpose(1, 2)).transpose(1, 2))

    @torch.no_grad()
    def emissions(self, features: torch.Tensor) -> np.ndarray:
        """Scaled log-likelihoods ``[T, V]`` (log-posterior minus ``prior_scale`` x log-prior)."""
        log_post = F.log_softmax(self(features[None])[0].float(), dim=-1)
        return (log_post - self.config.prior_scale * self.log_prior).numpy()

    @property
    def sampling_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @torch.no_grad()
    def align(
        self,
        waveform: np.ndarray | torch.Tensor,
        token_ids: Sequence[int],
        *,
        check: bool = True,
        source: str | None = None,
        utterance_id: str | None = None,
    ) -> Alignment:
        """Align a mono waveform ``[S]`` at ``sampling_rate`` with its token ids (``source`` and
        ``utterance_id`` are part of the aligner interface and unused here).

        Raises:
            AlignmentError: Too few frames for the phonemes, or (with ``check``) a score below
                ``mismatch_threshold`` (the transcript does not match the audio).
        """
        waveform = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
        features = self.features(waveform)
        alignment = self._align_features(features, token_ids)
        threshold = self.config.mismatch_threshold
        if check and threshold is not None and alignment.score < threshold:
            raise AlignmentError(
                f"transcript does not match the audio: alignment score {alignment.score:.2f} is below the "
                f"corpus threshold {threshold:.2f}"
            )
        return alignment

    def _align_features(self, features: torch.Tensor, token_ids: Sequence[int]) -> Alignment:
        emissions = self.emissions(features)
        alignment = viterbi_align(emissions, self.class_of(token_ids), self.optional_mask(token_ids))
        alignment.score -= float(emissions.max(-1).mean())
        return alignment

    def optional_mask(self, token_ids: Sequence[int]) -> list[bool]:
        separators = set(self.config.separator_ids)
        return [int(t) in separators for t in token_ids]


def viterbi_align(emissions: np.ndarray, classes: Sequence[int], optional: Sequence[bool]) -> Alignment:
    """Monotonic forced alignment of ``len(classes)`` tokens to ``T`` frames.

    Args:
        emissions: ``[T, V]`` log-scores of each class at each frame.
        classes: Class of each token ``[N]``.
        optional: Whether each token may own zero frames ``[N]`` (mandatory ones own >= 1).

    Returns:
        :class:`Alignment` with per-token durations summing to ``T``; ``score`` is the mean
        per-frame emission of the path.

    Raises:
        AlignmentError: If ``T`` is smaller than the number of mandatory tokens.
    """
    num_frames, n = emissions.shape[0], len(classes)
    optional = np.asarray(optional, dtype=bool)
    if n == 0:
        raise AlignmentError("no tokens to align")
    mandatory = int((~optional).sum())
    if num_frames < max(mandatory, 1):
        raise AlignmentError(f"{num_frames} frames are too few for {mandatory} phonemes")
    scores = emissions[:, np.asarray(classes)]  # [T, N]
    # run[i]: how many optional tokens directly precede token i (they can be skipped to reach i).
    run = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        run[i] = run[i - 1] + 1 if optional[i - 1] else 0
    max_run = int(run.max())
    neg = -1e30
    # Start in token 0 or any token preceded only by optional tokens.
    dp = np.where(run >= np.arange(n), scores[0], neg)
    back = np.zeros((num_frames, n), dtype=np.int32)
    back[0] = -1
    index = np.arange(n)
    for t in range(1, num_frames):
        best = dp.copy()  # stay
        source = index.copy()
        for k in range(0, max_run + 1):  # come from token i-1-k, skipping k optional tokens
            prev = index - 1 - k
            valid = (prev >= 0) & (run >= k)
            candidate = np.where(valid, dp[np.clip(prev, 0, None)], neg)
            better = candidate > best
            best = np.where(better, candidate, best)
            source = np.where(better, prev, source)
        dp = best + scores[t]
        back[t] = source
    trailing = np.zeros(n, dtype=bool)  # tokens after which only optional tokens remain
    trailing[-1] = True
    for i in range(n - 2, -1, -1):
        trailing[i] = trailing[i + 1] and optional[i + 1]
    end = int(np.argmax(np.where(trailing, dp, neg)))
    total = float(dp[end])
    durations = [0] * n
    state = end
    for t in range(num_frames - 1, -1, -1):
        durations[state] += 1
        if t > 0:
            state = int(back[t, state])
    return Alignment(durations=durations, score=total / num_frames)


__all__ = ["Alignment", "AlignmentError", "EllaVAlignerConfig", "EllaVAlignerModel", "viterbi_align"]
