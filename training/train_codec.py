"""``ella-v train-codec``: train the learned embedded codec (:class:`EllaVCodecModel`) on an audio corpus.

Log-mel features of every utterance are computed once and held in memory (an hour of speech is
about 15 MB); training draws random crops, applies quantiser dropout (each crop keeps its first
``n`` quantiser levels, ``n`` uniform in ``1..K``) and minimises L1 + L2 on the normalised log-mel
plus the commitment loss, with AdamW, warmup and cosine decay under Accelerate. Every
``eval_every`` steps the held-out utterances (split by prompt, never trained on) are reconstructed
from the first codebook alone and from all codebooks (a run ``init_from`` a trained codec also logs
its starting codec's figures as step 0: the fine-tune's baseline); checkpoints are atomic and
``--resume`` continues exactly where a run stopped. ``OUT/model`` always holds the newest codec.

Decoder fine-tuning (``init_from`` a trained codec, ``train_decoder_only: true``): the encoder,
the quantiser and the feature normalisation are kept frozen, so every code stays what it was and
the GARs and NARs trained on those codes stay valid; only the decoder (codes -> log-mel) trains on.
``ella-v assemble --codec`` then swaps the new decoder into a release checkpoint.

Decoding the NAR's latents (``nar_fraction``, with decoder fine-tuning from a TTS checkpoint): a
share of each batch is decoded from the latents that checkpoint's synthesis gives the decoder (the
true first codebook, the NAR's codebooks 2..K in expectation; :mod:`.nar_latents`), so that the
decoder learns the inputs it will be given rather than true codes only.

Phoneme distillation (``phoneme_loss_weight > 0`` with ``alignments=`` an ``ella-v prepare``
output of the same corpus): a linear classifier reads each frame's aligned phoneme from the first
codebook's quantised latents and its cross-entropy joins the loss, so that the first codebook, the
one the GAR predicts, carries the phonetic content (SpeechTokenizer distils HuBERT into its first
level the same way; here the forced alignments are the teacher). The classifier is a training aid
and is not part of the saved codec; its held-out frame accuracy is logged as ``eval_phone_accuracy``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._optional import require
from .._outputs import writes_output_dir
from ..modeling.codec_learned import EllaVCodecConfig, EllaVCodecModel
from ..modeling.sequence_layout import frame_phonemes
from .checkpointing import (
    JsonRecipe,
    append_log,
    finish_run,
    has_checkpoints,
    list_checkpoints,
    record_recipe,
    remove_stale,
    resume_from,
    step_bookkeeping,
    step_seed,
)
from .nar_latents import check_tts_checkpoint, load_tts_with_nar, nar_latents, prepared_rows


@dataclass
class CodecTrainConfig(JsonRecipe):
    """Codec training recipe (a JSON file; see ``training/configs/codec-*.json``).

    ``codec`` holds :class:`EllaVCodecConfig` fields (e.g. ``{"codebook_size": 1024, "downsample": 2}``).
    ``first_level_fraction``: share of training examples that keep only the first quantiser level
    (the others keep ``n`` uniform in ``1..K``); above 0 it weights the decoder toward speaking
    from the first codebook alone, which is what a GAR generates.
    ``init_from``: a trained codec to start from (a codec directory, or a TTS checkpoint whose
    embedded codec is taken), with its feature normalisation; ``codec`` must then be empty.
    ``train_decoder_only``: with ``init_from``, freeze the encoder and quantiser (the codes do not
    change) and train the decoder alone.
    ``nar_fraction``: with ``train_decoder_only`` and ``init_from`` a TTS checkpoint, the share of
    each batch's crops the decoder reads from the latents synthesis would give it (the true first
    codebook, codebooks 2..K as the expected vectors of the checkpoint's NAR; see
    :mod:`.nar_latents`) instead of the true codes'; needs the corpus's alignments (``--alignments``).
    """

    codec: dict = field(default_factory=dict)
    init_from: str | None = None
    train_decoder_only: bool = False
    nar_fraction: float = 0.0
    max_steps: int = 20000
    batch_size: int = 32
    crop_frames: int = 96
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    max_grad_norm: float = 1.0
    quantizer_dropout: bool = True
    first_level_fraction: float = 0.0
    phoneme_loss_weight: float = 0.0
    mixed_precision: str = "no"
    eval_fraction: float = 0.05
    eval_utterances: int = 60
    eval_every: int = 500
    save_every: int = 500
    keep_last: int = 2
    log_every: int = 50
    seed: int = 0

    def validate(self) -> None:
        EllaVCodecConfig(**self.codec)  # raises on bad codec fields
        if self.init_from is not None and self.codec:
            raise ValueError(f"init_from takes the codec's architecture from {self.init_from}; leave `codec` empty (got {sorted(self.codec)})")
        if self.train_decoder_only and self.init_from is None:
            raise ValueError("train_decoder_only needs init_from: a trained codec whose encoder and quantiser are kept")
        if self.train_decoder_only and self.phoneme_loss_weight:
            raise ValueError("phoneme_loss_weight trains the first codebook, which train_decoder_only freezes: set it to 0")
        if not 0 <= self.nar_fraction <= 1:
            raise ValueError(f"nar_fraction must lie in [0, 1], got {self.nar_fraction}")
        if self.nar_fraction and not self.train_decoder_only:
            raise ValueError("nar_fraction trains the decoder on a NAR's predictions of the codes, which must then stay as they are: "
                             "set train_decoder_only (and init_from the TTS checkpoint whose NAR it is)")
        for name in ("max_steps", "batch_size", "crop_frames", "eval_every", "save_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must lie in (0, 1), got {self.eval_fraction}")
        if not 0 <= self.first_level_fraction < 1:
            raise ValueError(f"first_level_fraction must lie in [0, 1), got {self.first_level_fraction}")
        if self.first_level_fraction and not self.quantizer_dropout:
            raise ValueError("first_level_fraction needs quantizer_dropout")
        if self.phoneme_loss_weight < 0:
            raise ValueError(f"phoneme_loss_weight must be >= 0, got {self.phoneme_loss_weight}")


def corpus_audio(data: str | os.PathLike, sampling_rate: int, progress: bool = True, desc: str = "read audio"):
    """Every readable utterance of a corpus with its waveform ``[S]`` at ``sampling_rate``, one at a
    time: ``(utterance, waveform)``. Entries the reader skips and unreadable files are reported on
    stderr and left out."""
    from ..processing.audio import AudioError, load_audio, prepare_waveform
    from ..processing.corpus import read_corpus

    utterances, problems = read_corpus(data)
    for problem in problems:
        print(f"skipped {problem.id}: {problem.reason}", file=sys.stderr)
    for utterance in tqdm(utterances, desc=desc, disable=not progress, file=sys.stderr):
        try:
            yield utterance, prepare_waveform(*load_audio(utterance.audio_path), sampling_rate, name=utterance.audio_path)
        except AudioError as error:
            print(f"skipped {utterance.id}: {error}", file=sys.stderr)


def corpus_features(model: EllaVCodecModel, data: str | os.PathLike, progress: bool = True) -> tuple[list, list[np.ndarray]]:
    """Read a corpus and compute each utterance's log-mel ``[T_mel, n_mels]`` (unnormalised).

    Returns:
        ``(utterances, features)``; unreadable files are reported on stderr and left out.
    """
    kept, features = [], []
    with torch.no_grad():
        for utterance, waveform in corpus_audio(data, model.config.sampling_rate, progress, "codec features"):
            kept.append(utterance)
            features.append(model.frontend(torch.from_numpy(waveform)[None])[0].numpy())
    if not features:
        raise ValueError(f"{data}: no usable audio")
    return kept, features


def frame_phoneme_labels(
    utterances: list, features: list[np.ndarray], alignments: str | os.PathLike
) -> tuple[list[np.ndarray], int]:
    """Each utterance's aligned phoneme per log-mel frame, from an ``ella-v prepare`` output.

    The prepared corpus holds every utterance's tokenizer ids and their durations in its codec's
    frames; they are stretched onto this codec's log-mel frames (nearest frame). Utterances the
    prepared corpus lacks (skipped there) get ``-100`` (ignored) everywhere.

    Returns:
        ``(labels, num_classes)``: per utterance ``[T_mel]`` int64, and the tokenizer's size.

    Raises:
        ValueError: ``alignments`` is not a prepared corpus, shares no utterance with this one, or an
            utterance's aligned length disagrees with its audio by more than 5 % + 2 frames.
    """
    rows, tokenizer = prepared_rows(alignments)
    return _labels_from_rows(utterances, features, rows, Path(alignments)), len(tokenizer)


def _labels_from_rows(
    utterances: list, features: list[np.ndarray], rows: dict[str, tuple[list[int], list[int]]], folder: Path
) -> list[np.ndarray]:
    """:func:`frame_phoneme_labels`' labels from the prepared corpus ``folder``'s rows (:func:`.nar_latents.prepared_rows`)."""
    labels, found = [], 0
    for utterance, feature in zip(utterances, features):
        frames = len(feature)
        if utterance.id not in rows:
            labels.append(np.full(frames, -100, dtype=np.int64))
            continue
        ids, durations = rows[utterance.id]
        per_frame = np.asarray(frame_phonemes(ids, durations), dtype=np.int64)  # [T_aligned]
        if not len(per_frame):
            raise ValueError(f"{utterance.id}: the alignment in {folder} covers no frame")
        # The aligned frames span the same audio as the log-mel frames: map by relative position.
        ratio = frames / len(per_frame)
        nearest = max(1, round(ratio))
        if abs(len(per_frame) * nearest - frames) > 0.05 * frames + 2 * nearest:
            raise ValueError(
                f"{utterance.id}: the alignment in {folder} covers {len(per_frame)} frames but the audio has {frames} "
                f"log-mel frames (ratio {ratio:.3f}): the prepared corpus holds other audio"
            )
        index = np.minimum((np.arange(frames) * len(per_frame)) // frames, len(per_frame) - 1)
        labels.append(per_frame[index])
        found += 1
    if not found:
        raise ValueError(f"{folder} shares no utterance id with the codec's corpus: prepare this corpus first")
    if found < len(utterances):
        print(f"phoneme distillation: {len(utterances) - found} of {len(utterances)} utterances have no alignment "
              f"in {folder} and are trained without the phoneme loss", file=sys.stderr)
    return labels


def load_trained_codec(path: str | os.PathLike) -> EllaVCodecModel:
    """A trained learned codec in float32: a codec directory (``ella-v train-codec``'s ``OUT/model``)
    or the codec embedded in a TTS checkpoint (e.g. a bundled demo).

    Raises:
        ValueError: ``path`` holds another kind of model.
    """
    from ..processing.prepare import load_codec

    if not (Path(path) / "config.json").is_file():
        raise ValueError(f"No model at {path} (no config.json)")
    codec = load_codec("auto", str(path))
    if not isinstance(codec, EllaVCodecModel):
        raise ValueError(f"{path} holds a {type(codec).__name__}, not the learned codec (EllaVCodecModel)")
    return codec.float()


def _levels(batch: int, num_codebooks: int, dropout: bool, generator: torch.Generator, first_fraction: float = 0.0) -> torch.LongTensor:
    """Quantiser levels each example keeps ``[batch]``: all without dropout; else ``n`` uniform in
    ``1..K``, except that a ``first_fraction`` share of the examples keeps the first level only."""
    if not dropout:
        return torch.full((batch,), num_codebooks)
    levels = torch.randint(1, num_codebooks + 1, (batch,), generator=generator)
    if first_fraction:
        levels[torch.rand(batch, generator=generator) < first_fraction] = 1
    return levels


def _crops(
    features: list[np.ndarray], weights: np.ndarray, batch: int, frames: int, rng: np.random.Generator,
    labels: list[np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.LongTensor | None]:
    """``batch`` random crops of ``frames`` frames, utterances drawn in proportion to their length:
    ``([batch, frames, n_mels], [batch, frames]`` phoneme labels of the same frames, or None)."""
    rows = rng.choice(len(features), size=batch, p=weights)
    starts = [int(rng.integers(0, len(features[r]) - frames + 1)) for r in rows]
    out = torch.from_numpy(np.stack([features[r][s : s + frames] for r, s in zip(rows, starts)]))
    if labels is None:
        return out, None
    return out, torch.from_numpy(np.stack([labels[r][s : s + frames] for r, s in zip(rows, starts)]))


def _nar_batch(
    model: EllaVCodecModel, features: list[np.ndarray], weights: np.ndarray,
    nar_set: tuple[list[np.ndarray], list[np.ndarray], np.ndarray], config: CodecTrainConfig, nar_count: int,
    frames: int, rng: np.random.Generator, generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoder-only batch for ``nar_fraction``: ``batch_size - nar_count`` crops of true codes
    (quantiser dropout as usual; latents from the frozen encoder and quantiser) and ``nar_count``
    crops of the NAR's latents. Returns ``(log-mel [B, frames, n_mels], latents [B, frames / downsample, D])``."""
    down = model.config.downsample
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []
    true_count = config.batch_size - nar_count
    if true_count:
        batch, _ = _crops(features, weights, true_count, frames, rng)
        levels = _levels(true_count, model.config.num_codebooks, config.quantizer_dropout, generator, config.first_level_fraction)
        with torch.no_grad():
            latents, _ = model.quantizer(model.latents(batch.to(model.device)), levels.to(model.device))
        parts.append((batch, latents.cpu()))
    if nar_count:
        nar_features, nar_latents_list, nar_weights = nar_set
        rows = rng.choice(len(nar_features), size=nar_count, p=nar_weights)
        starts = [int(rng.integers(0, (len(nar_features[r]) - frames) // down + 1)) for r in rows]  # in code frames
        parts.append((
            torch.from_numpy(np.stack([nar_features[r][s * down : s * down + frames] for r, s in zip(rows, starts)])),
            torch.from_numpy(np.stack([nar_latents_list[r][s : s + frames // down] for r, s in zip(rows, starts)])),
        ))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _phoneme_loss(head: torch.nn.Module, first_level: torch.Tensor, labels: torch.LongTensor, downsample: int) -> torch.Tensor:
    """Cross-entropy of the aligned phoneme of every code frame from the first level ``[B, T, D]``;
    ``labels [B, T * downsample]`` at the log-mel rate (each code frame takes its first mel frame's)."""
    logits = head(first_level)  # [B, T, classes]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels[:, ::downsample].reshape(-1), ignore_index=-100)


def reconstruction_losses(
    model: EllaVCodecModel, features: list[torch.Tensor], head: torch.nn.Module | None = None,
    labels: list[torch.LongTensor] | None = None, nar: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Mean held-out reconstruction loss (L1 + L2, normalised log-mel) from the first codebook and
    from all; with a phoneme ``head`` and ``labels`` also the first level's frame accuracy; with
    ``nar`` (pairs of normalised log-mel ``[T_mel, n_mels]`` and the NAR's latents ``[T, D]``; see
    :mod:`.nar_latents`) also the loss decoding those latents, as ``"nar"``. Every module is left
    in the mode it was in (a decoder-only run keeps its frozen parts in eval mode)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    totals = {"level_1": 0.0, "all": 0.0}
    correct = counted = 0
    device = model.device
    with torch.no_grad():
        for i, feature in enumerate(features):
            x = feature[None].to(device)
            outputs = {key: model(x, levels=torch.tensor([levels], device=device)) for key, levels in (("level_1", 1), ("all", model.config.num_codebooks))}
            for key, output in outputs.items():
                totals[key] += float(output["reconstruction_loss"]) / len(features)
            if head is not None and labels is not None:
                first = outputs["level_1"]["first_level"]  # [1, T, D]
                target = labels[i][None, :: model.config.downsample][:, : first.shape[1]].to(device)
                keep = target >= 0
                correct += int((head(first).argmax(-1) == target)[keep].sum())
                counted += int(keep.sum())
        for feature, latents in nar or ():
            output = model(feature[None].to(device), decoder_latents=latents[None].to(device))
            totals["nar"] = totals.get("nar", 0.0) + float(output["reconstruction_loss"]) / len(nar)
    if counted:
        totals["phone_accuracy"] = correct / counted
    for module, training in modes:
        module.training = training
    return totals


def _check_train_codec(arguments: dict) -> None:
    """The recipe and its alignments, before the run directory is created."""
    config = arguments["config"]
    config.validate()
    if not Path(arguments["data"]).is_dir():
        raise ValueError(f"--data {arguments['data']}: no such corpus directory")
    distil = config.phoneme_loss_weight > 0
    if distil and arguments["alignments"] is None:
        raise ValueError("phoneme_loss_weight > 0 needs alignments= (--alignments): an `ella-v prepare` output of this corpus")
    if config.nar_fraction and arguments["alignments"] is None:
        raise ValueError("nar_fraction > 0 needs alignments= (--alignments): an `ella-v prepare` output of this corpus (the NAR "
                         "reads each utterance's phonemes)")
    if arguments["alignments"] is not None and not distil and not config.nar_fraction:
        raise ValueError("alignments were given but the recipe's phoneme_loss_weight and nar_fraction are 0: set one or drop --alignments")
    if config.nar_fraction:
        check_tts_checkpoint(config.init_from)  # refuses a codec directory before anything is written


@writes_output_dir("ella-v train-codec", legacy=has_checkpoints, check=_check_train_codec)
def train_codec(
    config: CodecTrainConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    alignments: str | os.PathLike | None = None,
) -> dict:
    """Train the learned codec (see the module docstring).

    Args:
        config: The recipe.
        data: Audio corpus (audiofolder, LibriTTS or LibriSpeech directory).
        out: Run directory (checkpoints, ``log.jsonl``, the newest codec in ``OUT/model``).
        resume: Continue from the newest complete checkpoint in ``out``.
        alignments: An ``ella-v prepare`` output of ``data`` (any codec): its forced alignments are
            the phoneme-distillation targets and the NAR's phonemes (``nar_fraction``). Required
            exactly when ``config.phoneme_loss_weight > 0`` or ``config.nar_fraction > 0``.
        progress: Show progress bars.
        stop_after: Stop (as if interrupted) after this many steps of this invocation (tests).

    Returns:
        A summary: steps, held-out losses, seconds, model path.
    """
    Accelerator = require("accelerate", "train", "ella-v train-codec").Accelerator
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    from ..processing.corpus import split_by_prompt

    distil = config.phoneme_loss_weight > 0
    use_nar = config.nar_fraction > 0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    checkpoints = list_checkpoints(out)
    if checkpoints and not resume:
        raise ValueError(f"{out} already has checkpoints; pass --resume to continue or choose a new --out")
    record_recipe(out, "codec_train_config.json", config, resuming=bool(checkpoints))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=config.mixed_precision)
    set_seed(config.seed)
    model = load_trained_codec(config.init_from) if config.init_from is not None else EllaVCodecModel(EllaVCodecConfig(**config.codec))
    utterances, features = corpus_features(model, data, progress and accelerator.is_main_process)
    labels, num_classes, rows = None, 0, {}
    if distil or use_nar:  # the prepared corpus is read once: the distillation's targets, the NAR's phonemes
        rows, tokenizer = prepared_rows(alignments)
        labels, num_classes = _labels_from_rows(utterances, features, rows, Path(alignments)), len(tokenizer)
    train_set, held = split_by_prompt(utterances, config.eval_fraction, config.seed)
    held_ids = {u.id for u in held}
    train_rows = [i for i, u in enumerate(utterances) if u.id not in held_ids and len(features[i]) >= config.crop_frames]
    eval_rows = [i for i, u in enumerate(utterances) if u.id in held_ids][: config.eval_utterances]
    if not train_rows:
        raise ValueError(f"{data}: no training utterance has {config.crop_frames} frames ({config.crop_frames / model.config.frame_rate:.1f} s)")
    if config.init_from is None:  # a new codec normalises by its training corpus; a trained one keeps its own
        stacked = np.concatenate([features[i] for i in train_rows])
        with torch.no_grad():
            model.feature_mean.copy_(torch.from_numpy(stacked.mean(0)))
            model.feature_std.copy_(torch.from_numpy(stacked.std(0) + 1e-5))
    mean, std = model.feature_mean.numpy().copy(), model.feature_std.numpy().copy()
    down = model.config.downsample
    frames = math.ceil(config.crop_frames / down) * down
    normalise = lambda f: ((f - mean) / std).astype(np.float32)  # noqa: E731
    train_rows = [i for i in train_rows if len(features[i]) >= frames]
    eval_rows = [i for i in eval_rows if len(features[i]) >= down]
    train_features = [normalise(features[i]) for i in train_rows]
    train_labels = [labels[i] for i in train_rows] if distil else None
    eval_tensors = [torch.from_numpy(normalise(features[i][: len(features[i]) // down * down])) for i in eval_rows]
    eval_labels = [torch.from_numpy(labels[i]) for i in eval_rows] if distil else None
    weights = np.array([len(f) - frames + 1 for f in train_features], dtype=np.float64)
    weights /= weights.sum()
    nar_set = None  # (normalised features, NAR latents, crop weights) of the aligned training utterances
    eval_nar: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    if use_nar:
        tts = load_tts_with_nar(config.init_from)
        tts.config.check_tokenizer(tokenizer)
        chosen = train_rows + eval_rows
        made = nar_latents(tts, model, [utterances[i] for i in chosen], train_features + [t.numpy() for t in eval_tensors],
                           [labels[i] for i in chosen], rows, progress and accelerator.is_main_process)
        del tts
        train_made, eval_made = made[: len(train_rows)], made[len(train_rows) :]
        kept = [(f[: len(lat) * down], lat) for f, lat in zip(train_features, train_made) if lat is not None and len(lat) * down >= frames]
        if not kept:
            raise ValueError(f"{alignments}: no training utterance of {data} has an alignment there, so the NAR has nothing to decode")
        nar_weights = np.array([len(f) - frames + 1 for f, _ in kept], dtype=np.float64)
        nar_set = ([f for f, _ in kept], [lat for _, lat in kept], nar_weights / nar_weights.sum())
        eval_nar = [(t, torch.from_numpy(lat)) for t, lat in zip(eval_tensors, eval_made) if lat is not None]
    nar_count = round(config.batch_size * config.nar_fraction)

    # The phoneme classifier (distillation only) trains with the codec but is not saved with it.
    head = torch.nn.Linear(model.config.codebook_dim, num_classes) if distil else None
    frozen = (model.encoder, model.quantizer) if config.train_decoder_only else ()  # the codes stay as they are
    for module in frozen:
        module.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if distil else [])
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    if distil:
        model, head, optimizer, scheduler = accelerator.prepare(model, head, optimizer, scheduler)
    else:
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    state = {"step": 0, "seconds": 0.0}
    if resume and checkpoints:
        resume_from(accelerator, out, checkpoints, state)
    # Draws depend on the step only, so a resumed run sees the crops an uninterrupted one would.
    seed_of = lambda step: step_seed(config.seed, step * accelerator.num_processes + accelerator.process_index)  # noqa: E731

    if config.init_from is not None and state["step"] == 0 and accelerator.is_main_process:
        # A fine-tune's baseline: the starting codec's held-out figures, logged as step 0.
        start = reconstruction_losses(unwrapped, eval_tensors, head, eval_labels, eval_nar)
        append_log(out, {"step": 0, **{f"eval_{k}": v for k, v in start.items()}})
    model.train()
    for module in frozen:  # no EMA codebook updates, no dead-code restarts
        module.eval()
    bar = tqdm(total=config.max_steps, initial=state["step"], desc="train-codec", disable=not progress or not accelerator.is_main_process, file=sys.stderr)
    steps_this_run, last_eval, parts = 0, {}, {}
    while state["step"] < config.max_steps:
        started = time.time()
        rng = np.random.default_rng(seed_of(state["step"]))
        generator = torch.Generator().manual_seed(seed_of(state["step"]))
        if nar_set is None:
            batch, batch_labels = _crops(train_features, weights, config.batch_size, frames, rng, train_labels)
            batch = batch.to(accelerator.device)
            levels = _levels(config.batch_size, unwrapped.config.num_codebooks, config.quantizer_dropout, generator, config.first_level_fraction).to(accelerator.device)
            outputs = model(batch, levels=levels)
        else:  # the frozen quantiser's latents for the true-code crops, the NAR's for the others: one decoder pass
            batch, latents = _nar_batch(unwrapped, train_features, weights, nar_set, config, nar_count, frames, rng, generator)
            outputs = model(batch.to(accelerator.device), decoder_latents=latents.to(accelerator.device))
        if distil:
            outputs["phoneme_loss"] = _phoneme_loss(head, outputs["first_level"], batch_labels.to(accelerator.device), down)
            outputs["loss"] = outputs["loss"] + config.phoneme_loss_weight * outputs["phoneme_loss"]
        accelerator.backward(outputs["loss"])
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        state["step"] += 1
        steps_this_run += 1
        state["seconds"] += time.time() - started
        parts = {k: float(outputs[k].detach()) for k in ("loss", "reconstruction_loss", "commitment_loss", "phoneme_loss") if k in outputs}
        bar.update(1)
        evaluation = step_bookkeeping(accelerator, out, config, state, parts, scheduler, bar,
                                      lambda: reconstruction_losses(unwrapped, eval_tensors, head, eval_labels, eval_nar), unwrapped.save_pretrained)
        last_eval = evaluation if evaluation is not None else last_eval
        if stop_after is not None and steps_this_run >= stop_after:
            bar.close()
            return {"stopped_at": state["step"], **state, "last": parts}
    bar.close()
    return finish_run(
        accelerator, out, state, parts, unwrapped.save_pretrained,
        eval=last_eval or reconstruction_losses(unwrapped, eval_tensors, head, eval_labels, eval_nar),
        train_utterances=len(train_features),
        eval_utterances=len(eval_tensors),
        parameters=sum(p.numel() for p in unwrapped.parameters()),
    )


__all__ = ["CodecTrainConfig", "corpus_audio", "corpus_features", "frame_phoneme_labels", "load_trained_codec", "reconstruction_losses", "train_codec"]
