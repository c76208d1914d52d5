"""``ella-v train-vocoder``: train the learned codec's waveform stage (:class:`~ella_v_hf.modeling.vocoder.IstftVocoder`).

The codec (its encoder, quantiser and mel decoder) stays frozen: every code, and every GAR and NAR
trained on them, stays valid; only the vocoder, log-mel -> waveform, trains. Training draws random
crops of the corpus's waveforms (utterances in proportion to their length; the held-out prompts,
split as ``train-codec`` splits them, never trained on). The vocoder's input for a crop is either
the crop's own normalised log-mel or, for a ``reconstruction_fraction`` share of the batch, what the
codec decodes from the crop's first ``n`` quantiser levels (``n`` uniform in ``1..K``): the log-mel a
GAR and NAR will hand it. The loss is a multi-resolution STFT loss (spectral convergence + log
magnitude at each ``stft_resolutions`` entry) plus ``mel_loss_weight`` x the L1 distance of the
codec's own log-mel, and optionally (``adversarial_weight``) a multi-resolution spectrogram
discriminator's hinge and feature-matching losses. Every ``eval_every`` steps the held-out utterances are vocoded whole, from
their own log-mel and from all codebooks, and the same losses logged. Checkpoints are atomic,
``--resume`` continues exactly where a run stopped, and ``OUT/model`` holds the codec with its
vocoder (``waveform_decoder="vocos"``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._optional import require
from .._outputs import writes_output_dir
from ..modeling.codec_learned import EllaVCodecConfig, EllaVCodecModel
from .checkpointing import (
    JsonRecipe,
    finish_run,
    has_checkpoints,
    list_checkpoints,
    record_recipe,
    remove_stale,
    resume_from,
    step_bookkeeping,
    step_seed,
)
from .discriminators import MultiResolutionDiscriminator, discriminator_loss, feature_matching_loss, generator_loss
from .train_codec import _levels, corpus_audio, load_trained_codec

#: EllaVCodecConfig's vocoder fields, by the names a recipe's ``vocoder`` entry uses.
VOCODER_FIELDS = {"hidden_size": "vocoder_hidden_size", "intermediate_size": "vocoder_intermediate_size",
                  "layers": "vocoder_layers", "n_fft": "vocoder_n_fft"}


@dataclass
class VocoderTrainConfig(JsonRecipe):
    """Vocoder training recipe (a JSON file; see ``training/configs/vocoder.json``).

    ``vocoder``: the vocoder's size (``hidden_size``, ``intermediate_size``, ``layers``, ``n_fft``;
    unset ones keep :class:`EllaVCodecConfig`'s defaults, or the given codec's when it already has
    a vocoder, which then trains on from its weights).
    ``adversarial_weight`` > 0: a spectrogram discriminator per ``discriminator_resolutions`` entry
    (``discriminator_channels`` wide; :mod:`.discriminators`: on one CPU thread each costs about as
    much as the vocoder's own step at 8 channels) trains against the vocoder with hinge
    losses, and the vocoder's loss adds ``adversarial_weight`` x its hinge loss and
    ``feature_matching_weight`` x the discriminator's feature-matching distance.
    """

    vocoder: dict = field(default_factory=dict)
    max_steps: int = 10000
    batch_size: int = 16
    crop_frames: int = 48
    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    max_grad_norm: float = 1.0
    reconstruction_fraction: float = 0.5
    mel_loss_weight: float = 1.0
    stft_resolutions: list = field(default_factory=lambda: [[512, 128], [1024, 256], [2048, 512]])
    adversarial_weight: float = 0.0
    feature_matching_weight: float = 0.0
    discriminator_learning_rate: float = 5e-4
    discriminator_channels: int = 8
    discriminator_resolutions: list = field(default_factory=lambda: [[1024, 256]])
    eval_fraction: float = 0.05
    eval_utterances: int = 20
    eval_every: int = 500
    save_every: int = 250
    keep_last: int = 2
    log_every: int = 50
    seed: int = 0

    def validate(self) -> None:
        unknown = set(self.vocoder) - set(VOCODER_FIELDS)
        if unknown:
            raise ValueError(f"Unknown vocoder fields {sorted(unknown)}; expected some of {sorted(VOCODER_FIELDS)}")
        for name in ("max_steps", "batch_size", "crop_frames", "eval_every", "save_every", "keep_last", "log_every", "eval_utterances"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.reconstruction_fraction <= 1:
            raise ValueError(f"reconstruction_fraction must lie in [0, 1], got {self.reconstruction_fraction}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must lie in (0, 1), got {self.eval_fraction}")
        for name in ("mel_loss_weight", "adversarial_weight", "feature_matching_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.feature_matching_weight and not self.adversarial_weight:
            raise ValueError("feature_matching_weight needs the discriminator: set adversarial_weight > 0 too")
        for name in ("stft_resolutions", "discriminator_resolutions"):
            resolutions = getattr(self, name)
            if not resolutions or any(len(r) != 2 or not 0 < r[1] <= r[0] for r in resolutions):
                raise ValueError(f"{name} must be [[n_fft, hop], ...] with 0 < hop <= n_fft, got {resolutions}")


def with_vocoder(codec: EllaVCodecModel, sizes: dict) -> EllaVCodecModel:
    """``codec`` with a vocoder of ``sizes`` (recipe names; unset ones as the codec has them): its own
    vocoder's weights when it has one of that size, a fresh one otherwise; every other weight copied."""
    fields = {**codec.config.to_dict(), **{VOCODER_FIELDS[k]: v for k, v in sizes.items()}, "waveform_decoder": "vocos"}
    model = EllaVCodecModel(EllaVCodecConfig.from_dict(fields))
    state = codec.state_dict()  # holds vocoder weights only if the codec has a vocoder
    same_vocoder = codec.vocoder is not None and all(
        getattr(codec.config, name) == getattr(model.config, name) for name in VOCODER_FIELDS.values())
    if not same_vocoder:
        state = {k: v for k, v in state.items() if not k.startswith("vocoder.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("vocoder.") for k in missing):
        raise ValueError(f"The codec's weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def stft_loss(prediction: torch.Tensor, target: torch.Tensor, resolutions: list) -> torch.Tensor:
    """Multi-resolution STFT loss of waveforms ``[B, S]``: spectral convergence + L1 of log magnitudes, averaged."""
    total = prediction.new_zeros(())
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=prediction.device)
        spectra = [torch.stft(x.float(), n_fft, hop, window=window, center=True, return_complex=True).abs().clamp(min=1e-7)
                   for x in (prediction, target)]
        predicted, wanted = spectra
        convergence = torch.linalg.vector_norm(wanted - predicted) / torch.linalg.vector_norm(wanted).clamp(min=1e-7)
        total = total + convergence + F.l1_loss(predicted.log(), wanted.log())
    return total / len(resolutions)


def vocoder_losses(model: EllaVCodecModel, features: torch.Tensor, waveform: torch.Tensor, config: VocoderTrainConfig,
                   prediction: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The vocoder's reconstruction losses on normalised log-mel ``[B, T, n_mels]`` against waveforms
    ``[B, T * hop_length]`` (``prediction``: the vocoder's output for ``features``, if already computed)."""
    if prediction is None:
        prediction = model.vocoder(features)  # [B, T * hop]
    stft = stft_loss(prediction, waveform, config.stft_resolutions)
    mel = F.l1_loss(model.frontend(prediction), model.frontend(waveform))
    return {"loss": stft + config.mel_loss_weight * mel, "stft_loss": stft, "mel_loss": mel}


def corpus_waveforms(codec: EllaVCodecModel, data: str | os.PathLike, progress: bool = True) -> tuple[list, list[np.ndarray]]:
    """Every readable utterance of ``data`` at the codec's rate: ``(utterances, waveforms [S])``."""
    pairs = list(corpus_audio(data, codec.config.sampling_rate, progress))
    if not pairs:
        raise ValueError(f"{data}: no usable audio")
    return [u for u, _ in pairs], [w for _, w in pairs]


@torch.no_grad()
def _inputs(model: EllaVCodecModel, waveform: torch.Tensor, levels: torch.LongTensor | None) -> torch.Tensor:
    """Normalised log-mel ``[B, T, n_mels]`` of waveforms ``[B, S]``: their own, or (``levels`` ``[B]``,
    0 = own) what the codec decodes from each row's first ``levels`` quantiser levels."""
    features = model.features(waveform)  # [B, T, n_mels]
    if levels is None or not bool((levels > 0).any()):
        return features
    rows = levels > 0
    rebuilt = model(features[rows], levels=levels[rows])["reconstruction"]
    features = features.clone()
    features[rows] = rebuilt
    return features


def held_out_losses(model: EllaVCodecModel, waveforms: list[torch.Tensor], config: VocoderTrainConfig) -> dict[str, float]:
    """Mean held-out losses of whole utterances, vocoded from their own log-mel and from all codebooks."""
    training = model.vocoder.training
    model.vocoder.eval()
    totals = {"own_mel_loss": 0.0, "own_stft_loss": 0.0, "codes_mel_loss": 0.0, "codes_stft_loss": 0.0}
    with torch.no_grad():
        for waveform in waveforms:
            x = waveform[None].to(model.device)
            for key, levels in (("own", None), ("codes", torch.full((1,), model.config.num_codebooks, device=model.device))):
                losses = vocoder_losses(model, _inputs(model, x, levels), x, config)
                totals[f"{key}_mel_loss"] += float(losses["mel_loss"]) / len(waveforms)
                totals[f"{key}_stft_loss"] += float(losses["stft_loss"]) / len(waveforms)
    model.vocoder.train(training)
    return totals


def _check_train_vocoder(arguments: dict) -> None:
    arguments["config"].validate()
    if not Path(arguments["data"]).is_dir():
        raise ValueError(f"--data {arguments['data']}: no such corpus directory")
    if not (Path(arguments["codec"]) / "config.json").is_file():
        raise ValueError(f"--codec {arguments['codec']}: no trained codec there (no config.json)")


@writes_output_dir("ella-v train-vocoder", legacy=has_checkpoints, check=_check_train_vocoder)
def train_vocoder(
    config: VocoderTrainConfig,
    codec: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train a vocoder for a learned codec (see the module docstring).

    Args:
        config: The recipe.
        codec: A trained learned codec (a codec directory, or a TTS checkpoint whose codec is taken).
        data: Audio corpus (audiofolder, LibriTTS or LibriSpeech directory).
        out: Run directory (checkpoints, ``log.jsonl``, the codec with its vocoder in ``OUT/model``).
        resume: Continue from the newest complete checkpoint in ``out``.
        progress: Show progress bars.
        stop_after: Stop (as if interrupted) after this many steps of this invocation (tests).

    Returns:
        A summary: steps, held-out losses, seconds, model path.
    """
    Accelerator = require("accelerate", "train", "ella-v train-vocoder").Accelerator
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    from ..processing.corpus import split_by_prompt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    checkpoints = list_checkpoints(out)
    if checkpoints and not resume:
        raise ValueError(f"{out} already has checkpoints; pass --resume to continue or choose a new --out")
    record_recipe(out, "vocoder_train_config.json", config, resuming=bool(checkpoints))
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(config.seed)
    model = with_vocoder(load_trained_codec(codec), config.vocoder)
    utterances, waveforms = corpus_waveforms(model, data, progress and accelerator.is_main_process)
    _, held = split_by_prompt(utterances, config.eval_fraction, config.seed)
    held_ids = {u.id for u in held}
    hop = model.config.hop_length
    samples = config.crop_frames * hop
    train = [w for u, w in zip(utterances, waveforms) if u.id not in held_ids and len(w) >= samples]
    evaluation = [torch.from_numpy(w[: len(w) // hop * hop]) for u, w in zip(utterances, waveforms) if u.id in held_ids][: config.eval_utterances]
    if not train:
        raise ValueError(f"{data}: no training utterance has {config.crop_frames} frames ({samples / model.config.sampling_rate:.2f} s)")
    weights = np.array([len(w) - samples + 1 for w in train], dtype=np.float64)
    weights /= weights.sum()

    for name, parameter in model.named_parameters():  # the codec stays what it is: only the vocoder trains
        parameter.requires_grad_(name.startswith("vocoder."))
    parameters = list(model.vocoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, betas=(0.8, 0.9), weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    adversarial = config.adversarial_weight > 0
    if adversarial:  # trained beside the vocoder, checkpointed with it, never saved with the codec
        discriminator = MultiResolutionDiscriminator(config.discriminator_resolutions, config.discriminator_channels)
        optimizer_d = torch.optim.AdamW(discriminator.parameters(), lr=config.discriminator_learning_rate, betas=(0.8, 0.9))
        scheduler_d = get_cosine_schedule_with_warmup(optimizer_d, config.warmup_steps, config.max_steps)
        discriminator, optimizer_d, scheduler_d = accelerator.prepare(discriminator, optimizer_d, scheduler_d)
    unwrapped = accelerator.unwrap_model(model)
    state = {"step": 0, "seconds": 0.0}
    if resume and checkpoints:
        resume_from(accelerator, out, checkpoints, state)
    seed_of = lambda step: step_seed(config.seed, step * accelerator.num_processes + accelerator.process_index)  # noqa: E731

    unwrapped.eval()  # the frozen codec: no EMA codebook updates, no dead-code restarts
    unwrapped.vocoder.train()
    bar = tqdm(total=config.max_steps, initial=state["step"], desc="train-vocoder", disable=not progress or not accelerator.is_main_process, file=sys.stderr)
    steps_this_run, last_eval, parts = 0, {}, {}
    while state["step"] < config.max_steps:
        started = time.time()
        rng = np.random.default_rng(seed_of(state["step"]))
        generator = torch.Generator().manual_seed(seed_of(state["step"]))
        rows = rng.choice(len(train), size=config.batch_size, p=weights)
        starts = [int(rng.integers(0, len(train[r]) - samples + 1)) for r in rows]
        waveform = torch.from_numpy(np.stack([train[r][s : s + samples] for r, s in zip(rows, starts)])).to(accelerator.device)
        levels = _levels(config.batch_size, unwrapped.config.num_codebooks, True, generator)
        levels[torch.rand(config.batch_size, generator=generator) >= config.reconstruction_fraction] = 0  # 0: the crop's own log-mel
        prediction = unwrapped.vocoder(_inputs(unwrapped, waveform, levels.to(accelerator.device)))  # [B, S]
        outputs = vocoder_losses(unwrapped, None, waveform, config, prediction)
        if adversarial:
            optimizer_d.zero_grad()
            outputs["discriminator_loss"] = discriminator_loss(discriminator(waveform), discriminator(prediction.detach()))
            accelerator.backward(outputs["discriminator_loss"])
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(discriminator.parameters(), config.max_grad_norm)
            optimizer_d.step()
            scheduler_d.step()
            # The vocoder's side: the discriminator's weights take no gradient (only the vocoder's
            # input does), and its module runs unwrapped, outside the distributed reducer.
            judge = accelerator.unwrap_model(discriminator)
            judge.requires_grad_(False)
            with torch.no_grad():  # the real side: feature-matching targets only
                real = judge(waveform)
            fake = judge(prediction)
            judge.requires_grad_(True)
            outputs["adversarial_loss"] = generator_loss(fake)
            outputs["loss"] = outputs["loss"] + config.adversarial_weight * outputs["adversarial_loss"]
            if config.feature_matching_weight:
                outputs["feature_matching_loss"] = feature_matching_loss(real, fake)
                outputs["loss"] = outputs["loss"] + config.feature_matching_weight * outputs["feature_matching_loss"]
        accelerator.backward(outputs["loss"])
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        state["step"] += 1
        steps_this_run += 1
        state["seconds"] += time.time() - started
        parts = {k: float(v.detach()) for k, v in outputs.items()}
        bar.update(1)
        figures = step_bookkeeping(accelerator, out, config, state, parts, scheduler, bar,
                                   lambda: held_out_losses(unwrapped, evaluation, config) if evaluation else {}, unwrapped.save_pretrained)
        last_eval = figures if figures is not None else last_eval
        if stop_after is not None and steps_this_run >= stop_after:
            bar.close()
            return {"stopped_at": state["step"], **state, "last": parts}
    bar.close()
    return finish_run(
        accelerator, out, state, parts, unwrapped.save_pretrained,
        eval=last_eval,
        train_utterances=len(train),
        eval_utterances=len(evaluation),
        vocoder_parameters=sum(p.numel() for p in unwrapped.vocoder.parameters()),
    )


__all__ = ["VocoderTrainConfig", "stft_loss", "train_vocoder", "with_vocoder"]
