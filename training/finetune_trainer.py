"""Fine-tune a released checkpoint on your own speaker with ``transformers.Trainer``.

    # 1. prepare your recordings with the checkpoint's own codec and aligner
    ella-v prepare --data my_speaker/ --out my_speaker_prep \\
        --codec auto --codec-model CHECKPOINT --aligner-model CHECKPOINT
    # 2. fine-tune GAR and NAR
    python -m ella_v_hf.training.finetune_trainer --model CHECKPOINT --data my_speaker_prep --out my_voice

The collator yields GAR inputs (``input_ids``, ``attention_mask``, ``labels``) and the NAR's
(``nar_inputs``) in one dict; ``EllaVForTextToSpeech.forward`` returns their summed loss, which
is all the Trainer needs. The codec stays frozen. A GAR trained with text dropout (classifier-free
guidance) keeps it while fine-tuning. A corpus prepared with another codec (its codes
would mean nothing to the checkpoint) or another phoneme vocabulary is refused.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..modeling import EllaVForTextToSpeech
from ..modeling.loading import required_keys
from .checkpointing import step_seed
from .collators import GarCollator, NarCollator


@dataclass
class TTSDataCollator:
    """Rows of a prepared dataset -> ``EllaVForTextToSpeech.forward`` inputs (GAR + NAR).

    The Trainer reuses one collator, while a :class:`GarCollator` draws from a fixed seed: each call
    therefore collates with the GAR collator reseeded from ``seed`` and the batch's index, so text
    dropout (and prompt pairing) draw other rows at every step, reproducibly. The index is the
    call count; in dataloader worker ``k`` of ``n`` (which collates batches ``k, k + n, …``) its
    ``j``-th call is batch ``j * n + k``, so several workers draw what one process would. Workers
    that are not persistent restart their count every epoch (the rows of a shuffled epoch differ).
    """

    gar: GarCollator
    nar: NarCollator
    seed: int = 0
    calls: int = field(default=0, init=False)

    def __call__(self, rows: list[dict]) -> dict:
        from torch.utils.data import get_worker_info

        worker = get_worker_info()  # None in the main process
        index = self.calls if worker is None else self.calls * worker.num_workers + worker.id
        gar = replace(self.gar, seed=step_seed(self.seed, index))
        self.calls += 1
        return {**gar(rows), "nar_inputs": self.nar(rows)}


def check_prepared_codec(model: EllaVForTextToSpeech, data_dir: str | Path) -> None:
    """Refuse a corpus whose codes come from another codec than ``model.codec``.

    ``ella-v prepare`` stores the codec it encoded with in ``DATA/codec``; its configuration
    (type, codebooks, rates) and weights must be the checkpoint's.

    Raises:
        ValueError: No codec recorded, or another one (the message says what differs).
    """
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    folder = Path(data_dir) / "codec"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ValueError(f"{data_dir} records no codec ({folder}); prepare it with `ella-v prepare --codec auto --codec-model CHECKPOINT`.")
    prepared = AutoConfig.from_pretrained(folder)
    mine = model.config.codec_config
    fields = ("model_type", "num_codebooks", "codebook_size", "sampling_rate", "frame_rate")
    differs = [f"{key}: corpus {getattr(prepared, key, None)} vs checkpoint {getattr(mine, key, None)}" for key in fields
               if getattr(prepared, key, None) != getattr(mine, key, None)]
    if not differs:
        state, own = load_file(str(folder / "model.safetensors")), model.codec.state_dict()
        required = set(required_keys(model.codec, own))  # a saved learned codec may lack its EMA statistics
        own = {k: v for k, v in own.items() if k in state or k in required}
        if set(state) != set(own):
            differs.append("other tensors")
        else:
            changed = [k for k in own if not torch.allclose(state[k].float().cpu(), own[k].float().cpu(), rtol=1e-3, atol=1e-3)]
            if changed:
                differs.append(f"other weights ({len(changed)} tensors, e.g. {changed[0]})")
    if differs:
        raise ValueError(
            f"{data_dir} was prepared with another codec than the checkpoint's ({'; '.join(differs)}): its codes would mean "
            "nothing to the model. Prepare it with `ella-v prepare --codec auto --codec-model CHECKPOINT --aligner-model CHECKPOINT`."
        )


def finetune(
    model_dir: str,
    data_dir: str,
    out_dir: str,
    max_steps: int = 500,
    learning_rate: float = 1e-4,
    batch_size: int = 8,
    seed: int = 0,
    **training_args,
) -> Path:
    """Fine-tune ``model_dir`` on the prepared corpus ``data_dir`` with ``transformers.Trainer``.

    Returns:
        The directory with the fine-tuned model and its processor (``OUT/model``).
    """
    from datasets import load_from_disk
    from transformers import Trainer, TrainingArguments

    from ..processing import EllaVProcessor

    model = EllaVForTextToSpeech.from_pretrained(model_dir)
    for frozen in (model.codec, model.aligner):
        if frozen is not None:
            frozen.requires_grad_(False)
    processor = EllaVProcessor.from_pretrained(model_dir)
    dataset = load_from_disk(str(Path(data_dir) / "dataset"))
    model.config.check_tokenizer(processor.tokenizer)
    if processor.tokenizer.get_vocab() != EllaVProcessor.from_pretrained(Path(data_dir) / "processor").tokenizer.get_vocab():
        raise ValueError("The corpus was prepared with another phoneme vocabulary than the checkpoint's; prepare it with the checkpoint's processor.")
    check_prepared_codec(model, data_dir)
    # The checkpoint's text dropout goes on, so a guided GAR keeps its text-free branch.
    gar_collator = GarCollator(model.config.gar_config, text_dropout=model.config.gar_config.text_dropout or 0.0)
    collator = TTSDataCollator(gar_collator, NarCollator(model.config.nar_config, seed=seed), seed=seed)
    args = TrainingArguments(
        output_dir=str(Path(out_dir) / "trainer"),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=max(1, max_steps // 20),
        lr_scheduler_type="cosine",
        logging_steps=max(1, max_steps // 50),
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=not __import__("torch").cuda.is_available(),
        seed=seed,
        **training_args,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, processing_class=processor.tokenizer)
    trainer.train()
    final = Path(out_dir) / "model"
    if trainer.is_world_process_zero():  # one writer under torchrun / accelerate launch
        model.save_pretrained(final)
        processor.save_pretrained(final)
    trainer.accelerator.wait_for_everyone()
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an EllaVForTextToSpeech checkpoint directory")
    parser.add_argument("--data", required=True, help="`ella-v prepare` output prepared with the checkpoint's processor")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    final = finetune(args.model, args.data, args.out, args.max_steps, args.learning_rate, args.batch_size, args.seed)
    print(f"fine-tuned model -> {final}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
