"""``ella-v train``: train the GAR and/or NAR of an EllaVForTextToSpeech on a prepared corpus with Accelerate.

Dynamic batches by token count with length bucketing, AdamW with warmup and cosine decay,
gradient accumulation and clipping, mixed precision (bf16; fp16 with loss scaling on GPU),
periodic held-out loss, atomic checkpoints (model, optimizer, scheduler, RNG and data position)
every N steps with keep-last-K, and ``--resume`` that continues exactly where a run stopped.
``OUT/model`` always holds the newest checkpoint as a ready-to-use model directory (with its
processor), so an interrupted run can already synthesise.
Non-finite losses skip the step; too many stop the run with a clear message.
``accelerate launch -m ella_v_hf.cli train …`` runs it on several GPUs.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._optional import require
from .._outputs import writes_output_dir
from ..modeling import EllaVForTextToSpeech, EllaVTTSConfig
from ..modeling.loading import required_keys
from ..presets import preset
from ..processing.corpus import held_out_prompts
from .checkpointing import (
    JsonRecipe,
    append_log,
    export_atomically,
    has_checkpoints,
    list_checkpoints,
    record_corpus,
    record_recipe,
    remove_stale,
    resume_from,
    save_checkpoint,
    step_seed,
    write_json,
)
from .collators import GarCollator, NarCollator, gar_length

#: What a run trains: the GAR, the NAR, or both ("ar" is accepted for "gar", its earlier name).
STAGES = ("both", "gar", "nar")
STAGE_ALIASES = {"ar": "gar"}


@dataclass
class TrainConfig(JsonRecipe):
    """Training recipe (a JSON file; see ``training/configs/``). ``max_steps``, ``warmup_steps``,
    ``eval_every`` and ``save_every`` count batches (with gradient accumulation, an optimizer update
    happens every ``gradient_accumulation_steps`` batches)."""

    preset: str = "tiny"
    model_overrides: dict = field(default_factory=dict)
    layout: str = "ella-v"
    global_advance: bool = True
    local_advance: int | None = None
    inline_phonemes: bool = True  # False: the paper's "without in-sequence phonemes" ablation
    stage: str = "both"
    nar_frame_phonemes: bool = False  # EllaVNARConfig.frame_phonemes (ELLA-V layout only; not in the paper)
    gar_prompt_pairs: float = 0.0  # chance a training row follows a same-speaker prompt row (GarCollator; not in the paper)
    gar_text_dropout: float = 0.0  # chance a training row loses its phonemes, for classifier-free guidance (EllaVConfig.text_dropout; not in the paper)
    gar_input_noise: float = 0.0  # chance an acoustic input token is swapped for another of the batch (GarCollator.input_noise; not in the paper)
    gar_teacher: str | None = None  # a trained EllaVForTextToSpeech directory whose GAR's logits the GAR is also distilled from (not in the paper)
    gar_distill_weight: float = 0.5  # the distillation term's share of the GAR loss when gar_teacher is set
    max_steps: int = 2000
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    max_tokens_per_batch: int = 6000
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    eval_fraction: float = 0.03
    eval_every: int = 250
    save_every: int = 250
    keep_last: int = 2
    log_every: int = 10
    max_nonfinite_steps: int = 20
    seed: int = 0

    def validate(self) -> None:
        self.stage = STAGE_ALIASES.get(self.stage, self.stage)
        if self.layout not in ("ella-v", "vall-e"):
            raise ValueError(f"Unknown layout {self.layout!r}; expected 'ella-v' or 'vall-e'")
        if self.stage not in STAGES:
            raise ValueError(f"Unknown stage {self.stage!r}; expected one of {STAGES}")
        if self.nar_frame_phonemes and self.layout != "ella-v":
            raise ValueError("nar_frame_phonemes needs layout 'ella-v': only its GAR sequence gives each frame's phoneme at inference")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if not 0.0 <= self.gar_prompt_pairs <= 1.0:
            raise ValueError(f"gar_prompt_pairs must lie in [0, 1], got {self.gar_prompt_pairs}")
        if not 0.0 <= self.gar_text_dropout < 1.0:
            raise ValueError(f"gar_text_dropout must lie in [0, 1), got {self.gar_text_dropout}")
        if not 0.0 <= self.gar_input_noise < 1.0:
            raise ValueError(f"gar_input_noise must lie in [0, 1), got {self.gar_input_noise}")
        if not 0.0 <= self.gar_distill_weight <= 1.0:
            raise ValueError(f"gar_distill_weight must lie in [0, 1], got {self.gar_distill_weight}")
        if self.gar_teacher is not None and self.stage == "nar":
            raise ValueError("gar_teacher distils the GAR; stage 'nar' trains no GAR")
        for name in ("max_steps", "max_tokens_per_batch", "gradient_accumulation_steps", "save_every", "eval_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        preset(self.preset)


def rank_share(batches: list[list[int]], rank: int, processes: int) -> list[list[int]]:
    """The batches process ``rank`` of ``processes`` trains on: every ``processes``-th, from its rank,
    so the processes' shares never overlap and together are all the batches (a last incomplete
    round is dropped, so every process takes the same number of steps)."""
    usable = len(batches) - len(batches) % processes
    return batches[rank:usable:processes]


def bucket_batches(lengths: list[int], max_tokens: int, seed: int) -> list[list[int]]:
    """Group row indices into batches of at most ``max_tokens`` padded tokens, similar lengths
    together (sorted within shuffled buckets of 100 rows per batch-worth), batch order shuffled."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches, current, longest = [], [], 0
    for i in order:
        if lengths[i] > max_tokens:
            raise ValueError(f"A row of {lengths[i]} tokens exceeds max_tokens_per_batch={max_tokens}")
        if current and max(longest, lengths[i]) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def padding_waste(batches: list[list[int]], lengths: list[int]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1.0 - real / padded


def _split(dataset, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices (train, held-out), split by prompt id (no sentence on both sides)."""
    held = held_out_prompts(dataset["prompt_id"], fraction, seed)
    is_held = [p in held for p in dataset["prompt_id"]]
    return [i for i, h in enumerate(is_held) if not h], [i for i, h in enumerate(is_held) if h]


def build_model_config(config: TrainConfig, data: str | os.PathLike) -> EllaVTTSConfig:
    """The EllaVTTSConfig for a recipe and a prepared corpus (its tokenizer, codec and aligner)."""
    from transformers import AutoConfig

    from ..processing import EllaVPhonemeTokenizer

    data = Path(data)
    tokenizer = EllaVPhonemeTokenizer.from_pretrained(data / "processor")
    dims = {**preset(config.preset), **config.model_overrides}
    gar = dict(dims, num_phonemes=tokenizer.vocab_size, layout=config.layout, global_advance=config.global_advance)
    gar["inline_phonemes"] = config.inline_phonemes
    gar["text_dropout"] = config.gar_text_dropout
    if config.local_advance is not None:
        gar["local_advance"] = config.local_advance
    nar = dict(dims, num_phonemes=tokenizer.vocab_size, frame_phonemes=config.nar_frame_phonemes)
    aligner = AutoConfig.from_pretrained(data / "aligner") if (data / "aligner" / "config.json").is_file() else None
    return EllaVTTSConfig(
        gar_config=gar,
        nar_config=nar,
        codec_config=AutoConfig.from_pretrained(data / "codec"),
        aligner_config=aligner,
        phoneme_vocab_sha256=tokenizer.vocab_fingerprint(),
    )


def load_components(model: EllaVForTextToSpeech, data: str | os.PathLike) -> None:
    """Load the prepared corpus's codec (and aligner) weights into ``model`` and freeze them.

    Raises:
        ValueError: Missing or unexpected tensors (a codec of another kind than the config's).
    """
    from safetensors.torch import load_file

    for name in ("codec", "aligner"):
        module = getattr(model, name)
        if module is None:
            continue
        state = load_file(str(Path(data) / name / "model.safetensors"))
        result = module.load_state_dict(state, strict=False)
        missing = required_keys(module, result.missing_keys)  # a saved learned codec leaves out its EMA statistics
        if missing or result.unexpected_keys:
            raise ValueError(f"{data}/{name}: missing tensors {missing[:5]}, unexpected {result.unexpected_keys[:5]}")
        module.requires_grad_(False)


def load_teacher(path: str | os.PathLike, student: EllaVTTSConfig) -> torch.nn.Module:
    """The frozen GAR of a trained EllaVForTextToSpeech directory, checked against the student's.

    Raises:
        ValueError: Not a model directory, or a GAR whose logits would mean something else (another
            layout, token space or phoneme vocabulary than the student's).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"gar_teacher {path} is not a model directory (no config.json)")
    loaded = EllaVForTextToSpeech.from_pretrained(path, dtype=torch.float32)
    mine, theirs = student.gar_config, loaded.gar.config
    for name in ("layout", "vocab_size", "num_phonemes", "codebook_size"):
        if getattr(mine, name) != getattr(theirs, name):
            raise ValueError(f"gar_teacher {path}: {name} {getattr(theirs, name)!r} differs from the student's {getattr(mine, name)!r}")
    if loaded.config.phoneme_vocab_sha256 != student.phoneme_vocab_sha256:
        raise ValueError(f"gar_teacher {path} was trained with another phoneme vocabulary than this corpus's")
    return loaded.gar.eval().requires_grad_(False)


def _check_train(arguments: dict) -> None:
    """The recipe and the corpus, before the run directory is created."""
    arguments["config"].validate()
    data = Path(arguments["data"])
    if not all((data / name).is_dir() for name in ("dataset", "processor", "codec")):
        raise ValueError(f"{data} is not a prepared corpus (run `ella-v prepare` first)")


@writes_output_dir("ella-v train", legacy=has_checkpoints, check=_check_train)
def train(
    config: TrainConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train (see the module docstring).

    Args:
        config: The recipe.
        data: A prepared corpus (``ella-v prepare`` output directory).
        out: Run directory (checkpoints, logs, final model in ``OUT/model``).
        resume: Continue from the newest complete checkpoint in ``out``.
        progress: Show a progress bar.
        stop_after: Stop (as if interrupted) after this many steps of this invocation (tests).

    Returns:
        A summary: steps, final losses, tokens/s, padding waste, skipped steps, model path.
    """
    Accelerator = require("accelerate", "train", "ella-v train").Accelerator
    from accelerate.utils import set_seed
    from datasets import load_from_disk
    from transformers import get_cosine_schedule_with_warmup

    from ..processing import EllaVProcessor

    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    checkpoints = list_checkpoints(out)
    if checkpoints and not resume:
        raise ValueError(f"{out} already has checkpoints; pass --resume to continue or choose a new --out")
    use_cpu = not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )
    set_seed(config.seed)
    processor = EllaVProcessor.from_pretrained(data / "processor")
    dataset = load_from_disk(str(data / "dataset"))
    model_config = build_model_config(config, data)
    model = EllaVForTextToSpeech(model_config)
    load_components(model, data)
    teacher = load_teacher(config.gar_teacher, model_config).to(accelerator.device) if config.gar_teacher is not None else None
    if config.stage == "gar":
        model.nar.requires_grad_(False)
    elif config.stage == "nar":
        model.gar.requires_grad_(False)
    record_recipe(out, "train_config.json", config, resuming=bool(checkpoints), write=accelerator.is_main_process)
    record_corpus(out, data, resuming=bool(checkpoints), write=accelerator.is_main_process)

    train_rows, eval_rows = _split(dataset, config.eval_fraction, config.seed)
    lengths = [gar_length(dataset[i], model_config.gar_config) for i in range(len(dataset))]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    # Steps count batches; the schedule counts optimizer updates (one per accumulation window).
    updates = max(1, config.max_steps // config.gradient_accumulation_steps)
    warmup = config.warmup_steps // config.gradient_accumulation_steps
    # Accelerate steps a prepared scheduler once per process at every update (split_batches=False),
    # so its length counts process-updates: the same learning rate at each update for any P.
    processes = accelerator.num_processes
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup * processes, updates * processes)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    # Prompt pairs are joined as the processor joins a prompt's and a target's ids.
    joining = {"separator_ids": tuple(processor.tokenizer.separator_token_ids), "word_boundary_id": processor.tokenizer.word_boundary_token_id}

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "nonfinite_steps": 0, "tokens": 0, "seconds": 0.0}
    if resume and checkpoints:
        resume_from(accelerator, out, checkpoints, state)

    def batches_for(epoch: int) -> list[list[int]]:
        sub = [lengths[i] for i in train_rows]
        local = bucket_batches(sub, config.max_tokens_per_batch, config.seed + epoch)
        batches = [[train_rows[i] for i in b] for b in local]
        return rank_share(batches, accelerator.process_index, accelerator.num_processes)

    def losses(rows: list[dict], draw_seed: int, augment: bool = False) -> tuple[torch.Tensor, dict[str, float], int]:
        """Loss of one batch through the prepared (possibly distributed) model; ``augment`` applies
        the recipe's GAR prompt pairs, text dropout, input noise and teacher (training batches only,
        so held-out losses stay comparable)."""
        inputs: dict = {}
        tokens = 0
        if config.stage in ("both", "gar"):
            drawn = (
                dict(prompt_pair_probability=config.gar_prompt_pairs, text_dropout=config.gar_text_dropout, input_noise=config.gar_input_noise)
                if augment
                else {}
            )
            gar_batch = GarCollator(model_config.gar_config, seed=draw_seed, **drawn, **joining)(rows)
            inputs.update({k: v.to(accelerator.device) for k, v in gar_batch.items()})
            tokens += int(inputs["attention_mask"].sum())
            if teacher is not None and augment:
                with torch.no_grad():
                    logits = teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False).logits
                inputs.update(gar_teacher_logits=logits, gar_distill_weight=config.gar_distill_weight)
        if config.stage in ("both", "nar"):
            nar_batch = NarCollator(model_config.nar_config, seed=draw_seed)(rows)
            inputs["nar_inputs"] = {k: v.to(accelerator.device) for k, v in nar_batch.items()}
            tokens += int(nar_batch["codes_attention_mask"].sum())
        out = model(**inputs)
        parts = {k: float(getattr(out, f"{k}_loss").detach()) for k in ("gar", "nar", "gar_distill") if getattr(out, f"{k}_loss") is not None}
        return out.loss, parts, tokens

    def evaluate() -> dict[str, float]:
        model.eval()
        sums: dict[str, float] = {}
        batches = bucket_batches([lengths[i] for i in eval_rows], config.max_tokens_per_batch, 0) if eval_rows else []
        with torch.no_grad():
            for j, b in enumerate(batches):
                rows = [dataset[eval_rows[i]] for i in b]
                _, parts, _ = losses(rows, draw_seed=10_000 + j)
                if config.stage in ("both", "gar"):
                    # The same held-out rows continuing a same-speaker prompt row (loss on the continuation only).
                    prompted = GarCollator(
                        model_config.gar_config, prompt_pair_probability=1.0, seed=20_000 + j, mask_prompt_labels=True, **joining
                    )(rows)
                    parts["gar_prompted"] = float(model(**{k: v.to(accelerator.device) for k, v in prompted.items()}).gar_loss)
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v / len(batches)
        model.train()
        return sums

    def export(folder: Path) -> None:
        """``OUT/model``: model + processor, ready for synthesize/pipeline."""
        unwrapped.save_pretrained(folder)
        processor.save_pretrained(folder)
        (folder / "trained_steps.txt").write_text(str(state["step"]))

    writer = None
    try:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard")) if accelerator.is_main_process else None
    except ImportError:
        pass
    model.train()
    batches = batches_for(state["epoch"])
    waste = padding_waste(batches, lengths)
    bar = tqdm(total=config.max_steps, initial=state["step"], desc="train", disable=not progress or not accelerator.is_main_process, file=sys.stderr)
    steps_this_run, last_eval = 0, {}
    last_parts: dict[str, float] = {}
    while state["step"] < config.max_steps:
        if state["batch_in_epoch"] >= len(batches):
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
            batches = batches_for(state["epoch"])
        rows = [dataset[i] for i in batches[state["batch_in_epoch"]]]
        state["batch_in_epoch"] += 1
        started = time.time()
        with accelerator.accumulate(model):
            # The batch's place in the data order of a one-process run: with P processes each step
            # is P batches, the one-process run's batches step * P + rank. Its random draws (the
            # collator's and dropout's) are seeded from that alone, so P processes compute what one
            # process with P-step accumulation does, and a resumed run what an uninterrupted one does.
            draw_seed = step_seed(config.seed, state["step"] * accelerator.num_processes + accelerator.process_index)
            torch.manual_seed(draw_seed)
            loss, parts, tokens = losses(rows, draw_seed=draw_seed, augment=True)
            if not torch.isfinite(loss):
                state["nonfinite_steps"] += 1
                optimizer.zero_grad()
                if state["nonfinite_steps"] > config.max_nonfinite_steps:
                    raise RuntimeError(
                        f"{state['nonfinite_steps']} steps had a non-finite loss (limit {config.max_nonfinite_steps}); "
                        "lower the learning rate or use fp32 (mixed_precision='no')."
                    )
                continue
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        state["step"] += 1
        steps_this_run += 1
        state["tokens"] += tokens
        state["seconds"] += time.time() - started
        last_parts = parts
        bar.update(1)
        if state["step"] % config.log_every == 0 or state["step"] == config.max_steps:
            record = {"step": state["step"], "lr": scheduler.get_last_lr()[0], "tok_per_s": state["tokens"] / max(state["seconds"], 1e-9), **parts}
            bar.set_postfix({k: (f"{v:.2e}" if k == "lr" else round(v, 3)) for k, v in record.items() if k != "step"})
            if accelerator.is_main_process:
                append_log(out, record)
                if writer is not None:
                    for k, v in record.items():
                        if k != "step":
                            writer.add_scalar(f"train/{k}", v, state["step"])
        if state["step"] % config.eval_every == 0:
            last_eval = evaluate()
            if accelerator.is_main_process:
                append_log(out, {"step": state["step"], **{f"eval_{k}": v for k, v in last_eval.items()}})
                if writer is not None:
                    for k, v in last_eval.items():
                        writer.add_scalar(f"eval/{k}", v, state["step"])
        if state["step"] % config.save_every == 0 or state["step"] == config.max_steps:
            save_checkpoint(accelerator, out, state, config.keep_last, export)
        if stop_after is not None and steps_this_run >= stop_after:
            bar.close()
            return {"stopped_at": state["step"], **state, "last": last_parts}
    bar.close()
    final = out / "model"
    if accelerator.is_main_process and not (final / "config.json").is_file():
        export_atomically(out, export)  # the last step normally exported it with its checkpoint
    summary = {
        **state,
        "tokens_per_second": state["tokens"] / max(state["seconds"], 1e-9),
        "padding_waste": round(waste, 4),
        "last": last_parts,
        "eval": last_eval or evaluate(),
        "model": str(final),
        "train_utterances": len(train_rows),
        "eval_utterances": len(eval_rows),
    }
    if accelerator.is_main_process:  # whoever waits for summary.json never reads half of it
        write_json(out / "summary.json", summary)
    return summary


__all__ = ["STAGES", "TrainConfig", "bucket_batches", "rank_share", "build_model_config", "load_components", "load_teacher", "padding_waste", "train"]
