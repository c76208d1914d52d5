"""Training of the built-in aligner (:class:`~ella_v_hf.modeling.EllaVAlignerModel`): Viterbi
training from a flat start, the way HMM aligners such as MFA bootstrap themselves (start from a
uniform segmentation with leading/trailing silence found by energy, train the frame classifier on
it, re-align every utterance with Viterbi, repeat)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...modeling.aligner_ella_v import EllaVAlignerConfig, EllaVAlignerModel


def _flat_start(log_mel: torch.Tensor, token_ids: Sequence[int], optional: Sequence[bool], min_db: float = 35.0) -> list[int]:
    """Uniform segmentation, with leading/trailing frames quieter than ``min_db`` below the
    loudest frame given to the edge separators. ``log_mel``: raw natural-log mel ``[T, M]``."""
    num_frames = log_mel.shape[0]
    energy = log_mel.mean(-1).numpy()
    loud = energy > energy.max() - min_db / 20 * math.log(10)
    first, last = (int(np.argmax(loud)), int(num_frames - np.argmax(loud[::-1]))) if loud.any() else (0, num_frames)
    durations = [0] * len(token_ids)
    mandatory = [i for i, opt in enumerate(optional) if not opt]
    if not mandatory:
        durations[0] = num_frames
        return durations
    if optional[0]:
        durations[0] = first
    else:
        first = 0
    if optional[-1]:
        durations[-1] = num_frames - last
    else:
        last = num_frames
    span = last - first
    if span < len(mandatory):
        durations = [0] * len(token_ids)
        span, first = num_frames, 0
    edges = np.linspace(0, span, len(mandatory) + 1).round().astype(int)
    for i, token in enumerate(mandatory):
        durations[token] += int(edges[i + 1] - edges[i])
    return durations


def train_aligner(
    examples: Sequence[tuple[np.ndarray, Sequence[int]]],
    config: EllaVAlignerConfig,
    iterations: int = 4,
    epochs_per_iteration: int = 3,
    batch_frames: int = 8000,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> EllaVAlignerModel:
    """Viterbi-train the aligner from a flat start.

    Args:
        examples: ``(mono waveform at config.sampling_rate, token ids)`` pairs.
        config: Aligner configuration (vocabulary and separators of the tokenizer, frontend of the codec).
        iterations: Re-alignment rounds after the flat start.
        epochs_per_iteration: Classifier epochs per round.
        batch_frames: Frames per training batch (utterances are packed until this many).
        learning_rate: AdamW learning rate.
        seed: Seed of initialisation and shuffling.
        progress: Show progress bars.

    Returns:
        The trained model, with ``mismatch_threshold`` set from the corpus score distribution
        (median minus 8 median absolute deviations, and at least 0.5 below the median).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = EllaVAlignerModel(config)
    with torch.no_grad():
        raw = [model.frontend(torch.as_tensor(w, dtype=torch.float32)[None])[0] for w, _ in examples]
        stacked = torch.cat(raw)
        model.feature_mean.copy_(stacked.mean(0))
        model.feature_std.copy_(stacked.std(0) + 1e-5)
    features = [(f - model.feature_mean) / model.feature_std for f in raw]
    tokens = [list(map(int, ids)) for _, ids in examples]
    optional = [model.optional_mask(ids) for ids in tokens]
    classes = [torch.tensor(model.class_of(ids)) for ids in tokens]
    durations = [_flat_start(f, ids, opt) for f, ids, opt in zip(raw, tokens, optional)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)

    for iteration in range(iterations + 1):
        targets = [torch.repeat_interleave(c, torch.tensor(d)) for c, d in zip(classes, durations)]
        counts = torch.bincount(torch.cat(targets), minlength=config.vocab_size).float() + 1.0
        model.train()
        for _ in tqdm(range(epochs_per_iteration), desc=f"aligner round {iteration}", disable=not progress):
            order = rng.permutation(len(features))
            batch: list[int] = []
            for position, index in enumerate(order):
                batch.append(int(index))
                if sum(len(targets[i]) for i in batch) < batch_frames and position < len(order) - 1:
                    continue
                length = max(len(targets[i]) for i in batch)
                x = torch.zeros(len(batch), length, config.n_mels)
                y = torch.full((len(batch), length), -100)
                for row, i in enumerate(batch):
                    x[row, : len(targets[i])] = features[i]
                    y[row, : len(targets[i])] = targets[i]
                loss = F.cross_entropy(model(x).reshape(-1, config.vocab_size), y.reshape(-1), ignore_index=-100)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                batch = []
        model.eval()
        with torch.no_grad():
            model.log_prior.copy_(torch.log(counts / counts.sum()))
        results = [model._align_features(f, ids) for f, ids in zip(features, tokens)]
        durations = [r.durations for r in results]
    model.config.mismatch_threshold = mismatch_threshold([r.score for r in results])
    return model


def mismatch_threshold(scores: Sequence[float]) -> float:
    """Alignment scores below this flag a transcript that does not match its audio: the median minus
    8 median absolute deviations, and at least 0.5 below the median (robust to the mismatches themselves)."""
    values = np.asarray(scores, dtype=float)
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    return median - max(8.0 * mad, 0.5)


def builtin_aligner_config(tokenizer, sampling_rate: int, frame_rate: float) -> EllaVAlignerConfig:
    """An aligner configuration for ``tokenizer`` whose frames are a codec's (``sampling_rate``, ``frame_rate``)."""
    hop = round(sampling_rate / frame_rate)
    return EllaVAlignerConfig(
        vocab_size=tokenizer.vocab_size,
        separator_ids=tokenizer.separator_token_ids,
        sampling_rate=sampling_rate,
        hop_length=hop,
        n_fft=max(1024, 2 * hop),
    )


__all__ = ["builtin_aligner_config", "mismatch_threshold", "train_aligner"]
