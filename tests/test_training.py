"""Training: collators, bucketing, loss goes down, exact resume, clear config errors."""

from __future__ import annotations

import json

import pytest
import torch

from ella_v_hf.training.collators import GarCollator, NarCollator, gar_length
from ella_v_hf.training.trainer import TrainConfig, bucket_batches, padding_waste, train

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


def recipe(**overrides) -> TrainConfig:
    base = dict(preset="tiny", model_overrides=SMALL, max_steps=16, warmup_steps=2, learning_rate=3e-3,
                max_tokens_per_batch=2500, eval_every=100, save_every=8, log_every=1, eval_fraction=0.1)
    return TrainConfig(**{**base, **overrides})


def test_bucketing_respects_the_token_budget():
    lengths = [10, 200, 30, 190, 50, 55, 120, 5]
    batches = bucket_batches(lengths, 400, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(max(lengths[i] for i in b) * len(b) <= 400 for b in batches)
    assert 0 <= padding_waste(batches, lengths) < 0.5
    with pytest.raises(ValueError, match="exceeds max_tokens_per_batch"):
        bucket_batches([500], 400, seed=0)


def test_collators_follow_the_layout(prepared_corpus):
    from datasets import load_from_disk

    from ella_v_hf.modeling import EllaVConfig, EllaVNARConfig

    rows = [load_from_disk(str(prepared_corpus / "dataset"))[i] for i in range(3)]
    gar = EllaVConfig(num_phonemes=65, codebook_size=32, num_codebooks=2, frame_rate=50.0, **SMALL)
    batch = GarCollator(gar)(rows)
    assert batch["input_ids"].shape[1] == max(gar_length(r, gar) for r in rows)
    assert (batch["labels"] != -100).sum() == sum(r["num_frames"] + len(r["phoneme_ids"]) + 1 for r in rows)
    nar = NarCollator(EllaVNARConfig(num_phonemes=65, codebook_size=32, num_codebooks=2, **SMALL), seed=0)(rows)
    assert nar["codes"].shape[:2] == (3, 2) and (nar["codebook_index"] == 1).all()
    assert "frame_phoneme_ids" not in nar
    nar_config = EllaVNARConfig(num_phonemes=65, codebook_size=32, num_codebooks=2, frame_phonemes=True, **SMALL)
    aligned = NarCollator(nar_config, seed=0)(rows)["frame_phoneme_ids"]  # [B, T]
    space = nar_config.token_space
    for i, r in enumerate(rows):
        expected = [space.phoneme_id(p) for p, d in zip(r["phoneme_ids"], r["durations"]) for _ in range(d)]
        assert aligned[i].tolist() == expected + [space.PAD] * (aligned.shape[1] - len(expected))


def test_prompt_pairs_lay_out_rows_as_a_prompted_generate_does():
    from ella_v_hf.modeling import EllaVConfig, build_gar_sequence

    gar = EllaVConfig(num_phonemes=65, codebook_size=32, num_codebooks=2, frame_rate=50.0, **SMALL)
    row = lambda i, speaker, n: {"id": str(i), "speaker_id": speaker, "prompt_id": f"p{i}", "phoneme_ids": [i + 1] * n,  # noqa: E731
                                 "durations": [2] * n, "codes": [[i] * (2 * n), [0] * (2 * n)], "num_frames": 2 * n}
    rows = [row(1, "a", 3), row(2, "a", 2), row(3, "b", 4)]
    single = GarCollator(gar)(rows)
    assert torch.equal(GarCollator(gar, prompt_pair_probability=0.0, seed=5)(rows)["input_ids"], single["input_ids"])
    paired = GarCollator(gar, prompt_pair_probability=1.0, seed=0)(rows)
    space, spec = gar.token_space, gar.layout_spec
    # Speaker a's rows prompt each other; speaker b has no partner and stays single.
    for i, prompt in ((0, rows[1]), (1, rows[0])):
        joined = build_gar_sequence(prompt["phoneme_ids"] + rows[i]["phoneme_ids"], prompt["durations"] + rows[i]["durations"],
                                    prompt["codes"][0] + rows[i]["codes"][0], space, spec).input_ids
        assert paired["input_ids"][i, : len(joined)].tolist() == joined and int(paired["attention_mask"][i].sum()) == len(joined)
        # The prompt part is exactly what generate() builds from a prompt (its first len(prompt) tokens).
        prompted = build_gar_sequence(prompt["phoneme_ids"] + rows[i]["phoneme_ids"], prompt["durations"], prompt["codes"][0], space, spec)
        assert joined[: len(prompted.input_ids)] == prompted.input_ids
    assert torch.equal(paired["input_ids"][2, : gar_length(rows[2], gar)], single["input_ids"][2, : gar_length(rows[2], gar)])
    # Masked: only the continuation is scored, and it is scored exactly as in the unmasked batch.
    masked = GarCollator(gar, prompt_pair_probability=1.0, seed=0, mask_prompt_labels=True)(rows)
    assert torch.equal(masked["input_ids"], paired["input_ids"])
    scored = masked["labels"] != -100
    assert torch.equal(masked["labels"][scored], paired["labels"][scored])
    assert int(scored[0].sum()) == int((single["labels"][0] != -100).sum())  # the same acoustic, EOP and EOS targets
    n = gar_length(rows[2], gar)
    assert torch.equal(masked["labels"][2, :n], single["labels"][2, :n]) and (masked["labels"][2, n:] == -100).all()
    with pytest.raises(ValueError, match="prompt_pair_probability"):
        GarCollator(gar, prompt_pair_probability=1.5)
    with pytest.raises(ValueError, match="gar_prompt_pairs"):
        recipe(gar_prompt_pairs=-0.1).validate()


def test_input_noise_swaps_only_acoustic_inputs_for_batch_codes_and_keeps_targets():
    from ella_v_hf.modeling import EllaVConfig

    gar = EllaVConfig(num_phonemes=65, codebook_size=32, num_codebooks=2, frame_rate=50.0, **SMALL)
    space = gar.token_space
    row = lambda i, n: {"id": str(i), "speaker_id": "a", "prompt_id": f"p{i}", "phoneme_ids": [i + 1] * n,  # noqa: E731
                        "durations": [3] * n, "codes": [[(i + t) % 7 for t in range(3 * n)], [0] * (3 * n)], "num_frames": 3 * n}
    rows = [row(i, 2 + i % 3) for i in range(40)]
    plain = GarCollator(gar, prompt_pair_probability=0.5, seed=3)(rows)
    noisy = GarCollator(gar, prompt_pair_probability=0.5, seed=3, input_noise=0.2)(rows)
    # Same pairing, mask and targets; only acoustic inputs change, each to a code the batch uses.
    assert torch.equal(noisy["attention_mask"], plain["attention_mask"]) and torch.equal(noisy["labels"], plain["labels"])
    acoustic = space.acoustic_mask(plain["input_ids"])
    changed = noisy["input_ids"] != plain["input_ids"]
    assert changed.any() and not changed[~acoustic].any()
    assert set(noisy["input_ids"][changed].tolist()) <= set(plain["input_ids"][acoustic].tolist())
    assert 0.1 < changed.sum() / acoustic.sum() < 0.25  # 20 % drawn, 1 in 7 keep their own code (7 in use): ~17 %
    assert torch.equal(GarCollator(gar, seed=3, input_noise=0.2)(rows)["input_ids"], GarCollator(gar, seed=3, input_noise=0.2)(rows)["input_ids"])
    with pytest.raises(ValueError, match="input_noise"):
        GarCollator(gar, input_noise=1.0)
    with pytest.raises(ValueError, match="gar_input_noise"):
        recipe(gar_input_noise=-0.1).validate()


def test_text_dropout_blanks_every_phoneme_of_the_drawn_rows_and_nothing_else():
    from ella_v_hf.modeling import EllaVConfig

    gar = EllaVConfig(num_phonemes=65, codebook_size=32, num_codebooks=2, frame_rate=50.0, **SMALL)
    space = gar.token_space
    row = lambda i, n: {"id": str(i), "speaker_id": "a", "prompt_id": f"p{i}", "phoneme_ids": [i + 1] * n,  # noqa: E731
                        "durations": [2] * n, "codes": [[i % 32] * (2 * n), [0] * (2 * n)], "num_frames": 2 * n}
    rows = [row(i, 2 + i % 3) for i in range(40)]
    plain = GarCollator(gar, prompt_pair_probability=0.5, seed=3)(rows)
    dropped = GarCollator(gar, prompt_pair_probability=0.5, seed=3, text_dropout=0.3)(rows)
    # Same pairing, mask and targets: only input phoneme tokens change, and a row loses all of them or none.
    assert torch.equal(dropped["attention_mask"], plain["attention_mask"]) and torch.equal(dropped["labels"], plain["labels"])
    changed = dropped["input_ids"] != plain["input_ids"]
    assert (space.phoneme_mask(plain["input_ids"])[changed]).all() and (dropped["input_ids"][changed] == space.PAD).all()
    blank = ~space.phoneme_mask(dropped["input_ids"]).any(1)
    assert torch.equal(blank, changed.any(1)) and 4 <= int(blank.sum()) <= 20  # about 30 % of 40 rows
    assert torch.equal(GarCollator(gar, seed=3, text_dropout=0.3)(rows)["input_ids"][blank.logical_not()],
                       GarCollator(gar, seed=3)(rows)["input_ids"][blank.logical_not()])
    with pytest.raises(ValueError, match="text_dropout"):
        GarCollator(gar, text_dropout=1.0)
    with pytest.raises(ValueError, match="gar_text_dropout"):
        recipe(gar_text_dropout=-0.1).validate()
    recipe(gar_text_dropout=0.1, layout="vall-e").validate()  # guidance for the VALL-E baseline too
    with pytest.raises(ValueError, match="text_dropout"):
        EllaVConfig(num_phonemes=65, codebook_size=32, text_dropout=1.5)


def test_trainer_collator_draws_other_text_dropout_rows_at_every_call():
    from ella_v_hf.modeling import EllaVConfig
    from ella_v_hf.training.finetune_trainer import TTSDataCollator

    gar = EllaVConfig(num_phonemes=65, codebook_size=32, num_codebooks=2, frame_rate=50.0, **SMALL)
    rows = [{"phoneme_ids": [i + 1] * 3, "durations": [2] * 3, "codes": [[i] * 6, [0] * 6], "num_frames": 6} for i in range(16)]

    def blanked(collator, calls=6):  # per call: which rows lost their phonemes
        return [tuple((~gar.token_space.phoneme_mask(collator(rows)["input_ids"]).any(1)).tolist()) for _ in range(calls)]

    def collator(seed):
        return TTSDataCollator(GarCollator(gar, text_dropout=0.5), nar=lambda rows: {}, seed=seed)

    draws = blanked(collator(0))
    assert len(set(draws)) > 1 and all(any(d) for d in draws)  # other rows at every call, not one fixed pattern
    assert draws == blanked(collator(0)) and draws != blanked(collator(1))  # reproducible from the seed
    # Two dataloader workers (batches 0, 2 | 1, 3) draw what one process draws.
    from torch.utils.data import DataLoader

    def loaded(workers):
        loader = DataLoader(rows, batch_size=4, collate_fn=collator(0), num_workers=workers)
        return [tuple((~gar.token_space.phoneme_mask(batch["input_ids"]).any(1)).tolist()) for batch in loader]

    assert loaded(2) == loaded(0) and len(set(loaded(0))) > 1


def test_prompt_pairs_join_ids_as_the_processor_does():
    from ella_v_hf.modeling import EllaVConfig, build_gar_sequence

    gar = EllaVConfig(num_phonemes=65, codebook_size=32, num_codebooks=2, frame_rate=50.0, **SMALL)
    boundary, stop = 2, 4  # "|" and "."
    prompt = {"id": "a", "speaker_id": "s", "prompt_id": "pa", "phoneme_ids": [boundary, 10, 11, stop], "durations": [3, 2, 2, 0],
              "codes": [[5] * 7, [0] * 7], "num_frames": 7}
    target = {"id": "b", "speaker_id": "s", "prompt_id": "pb", "phoneme_ids": [boundary, 12, 13, stop], "durations": [4, 3, 2, 0],
              "codes": [[6] * 9, [0] * 9], "num_frames": 9}
    collate = lambda **kw: GarCollator(gar, prompt_pair_probability=1.0, seed=0, separator_ids=(stop,), word_boundary_id=boundary, **kw)  # noqa: E731
    batch = collate()([target, prompt])
    # "| 10 11 . 12 13 ." with the target's leading pause (4 frames) on the prompt's ".", as in one recording of both.
    joined = build_gar_sequence([boundary, 10, 11, stop, 12, 13, stop], [3, 2, 2, 4, 3, 2, 0], [5] * 7 + [6] * 9, gar.token_space, gar.layout_spec)
    assert batch["input_ids"][0, : len(joined.input_ids)].tolist() == joined.input_ids
    masked = collate(mask_prompt_labels=True)([target, prompt])
    prefix = build_gar_sequence([boundary, 10, 11, stop, 12, 13, stop], [3, 2, 2, 4], [5] * 7 + [6] * 4, gar.token_space, gar.layout_spec)
    assert (masked["labels"][0, : len(prefix.input_ids)] == -100).all() and (masked["labels"][0, len(prefix.input_ids) :] != -100).any()


def test_frame_phoneme_nar_trains_from_a_recipe(prepared_corpus, tmp_path):
    summary = train(recipe(stage="nar", max_steps=4, nar_frame_phonemes=True), prepared_corpus, tmp_path / "run", progress=False)
    from ella_v_hf import EllaVForTextToSpeech

    model = EllaVForTextToSpeech.from_pretrained(tmp_path / "run" / "model")
    assert summary["step"] == 4 and model.config.nar_config.frame_phonemes and model.nar.frame_phoneme_embeddings is not None


def test_training_lowers_the_loss_and_writes_a_model(prepared_corpus, tmp_path):
    summary = train(recipe(max_steps=30, gar_text_dropout=0.2), prepared_corpus, tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"lr"' in line]
    first, last = log[0], log[-1]
    assert last["gar"] < first["gar"] - 0.3 and last["nar"] < first["nar"] - 0.3
    assert summary["step"] == 30 and summary["padding_waste"] < 0.5
    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.processing import EllaVProcessor

    model = EllaVForTextToSpeech.from_pretrained(tmp_path / "run" / "model").eval()
    assert model.config.gar_config.text_dropout == 0.2  # the recipe's text dropout, recorded for guidance
    inputs = EllaVProcessor.from_pretrained(tmp_path / "run" / "model")(["Hello."])
    for guidance in (None, 2.0):
        out = model.generate(**inputs, guidance_scale=guidance)
        assert torch.isfinite(out.audio).all() and out.audio_lengths[0] > 0 and not out.infinite.any()
    # Guidance's 2B rows reach the first-level recorder as B guided rows: same draws, expected rendering.
    runs = []
    for mode in ("code", "expected"):
        torch.manual_seed(0)
        runs.append(model.generate(**inputs, guidance_scale=2.0, first_level_decoding=mode))
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    frames = runs[1].first_code_probabilities[0]
    assert frames.shape[0] == runs[1].codes[0].shape[-1] and torch.allclose(frames.sum(-1), torch.ones(frames.shape[0]))


def test_interrupted_run_resumes_exactly(prepared_corpus, tmp_path):
    config = recipe(model_overrides={**SMALL, "hidden_dropout": 0.1})
    train(config, prepared_corpus, tmp_path / "straight", progress=False)
    train(config, prepared_corpus, tmp_path / "resumed", progress=False, stop_after=8)
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-8"]
    assert (tmp_path / "resumed" / "model" / "trained_steps.txt").read_text() == "8"  # usable before the end
    with pytest.raises(ValueError, match="pass --resume"):
        train(config, prepared_corpus, tmp_path / "resumed", progress=False)
    train(config, prepared_corpus, tmp_path / "resumed", progress=False, resume=True)

    def curve(run):
        lines = (tmp_path / run / "log.jsonl").read_text().splitlines()
        return {r["step"]: (r["gar"], r["nar"]) for r in map(json.loads, lines) if "lr" in r}

    straight, resumed = curve("straight"), curve("resumed")
    for step in range(9, 17):
        assert straight[step] == pytest.approx(resumed[step], rel=1e-5, abs=1e-5)


def test_distillation_loss_is_the_kl_over_counted_targets_only():
    from ella_v_hf import EllaVConfig, EllaVForCausalLM
    from ella_v_hf.modeling import build_gar_sequence

    config = EllaVConfig(num_phonemes=10, codebook_size=16, hidden_size=32, num_hidden_layers=2)
    model = EllaVForCausalLM(config)
    seq = build_gar_sequence([3, 5], [2, 3], [1, 2, 3, 4, 5], config.token_space, config.layout_spec)
    labels = torch.tensor([seq.labels])
    student = torch.randn(1, len(seq.input_ids), config.vocab_size)
    assert float(model.distillation_loss(student, student.clone(), labels)) == pytest.approx(0.0, abs=1e-6)
    teacher = torch.randn_like(student)
    counted = model.masked_labels(labels)[0, 1:] != -100
    expected = torch.stack([
        (teacher[0, t].softmax(-1) * (teacher[0, t].log_softmax(-1) - student[0, t].log_softmax(-1))).sum()
        for t in range(len(seq.input_ids) - 1) if counted[t]
    ]).mean()
    assert float(model.distillation_loss(student, teacher, labels)) == pytest.approx(float(expected), rel=1e-5)
    shifted = teacher.clone()
    shifted[0, 0] += 100.0  # the BOS-predicting position is not a counted target
    assert not counted[0] and float(model.distillation_loss(student, shifted, labels)) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        model.distillation_loss(student, teacher[..., :-1], labels)


def test_a_gar_distils_from_a_teacher_and_refuses_a_foreign_one(prepared_corpus, tmp_path):
    train(recipe(stage="gar", max_steps=8), prepared_corpus, tmp_path / "teacher", progress=False)
    teacher = str(tmp_path / "teacher" / "model")
    summary = train(recipe(stage="gar", max_steps=4, gar_teacher=teacher, gar_distill_weight=0.5), prepared_corpus,
                    tmp_path / "student", progress=False)
    log = [json.loads(line) for line in (tmp_path / "student" / "log.jsonl").read_text().splitlines() if '"lr"' in line]
    assert summary["step"] == 4 and all(r["gar_distill"] > 0 for r in log)
    assert "gar_distill" not in summary["eval"]  # held-out losses stay the plain cross-entropy
    from ella_v_hf import EllaVForTextToSpeech

    foreign = EllaVForTextToSpeech.from_pretrained(teacher)
    foreign.config.phoneme_vocab_sha256 = "0" * 64
    foreign.save_pretrained(tmp_path / "foreign")
    with pytest.raises(ValueError, match="another phoneme vocabulary"):
        train(recipe(stage="gar", max_steps=2, gar_teacher=str(tmp_path / "foreign")), prepared_corpus, tmp_path / "s2", progress=False)
    with pytest.raises(ValueError, match="not a model directory"):
        train(recipe(stage="gar", max_steps=2, gar_teacher=str(tmp_path)), prepared_corpus, tmp_path / "s3", progress=False)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(gar_distill_weight=1.5), "gar_distill_weight must lie in"),
        (dict(stage="nar", gar_teacher="x"), "stage 'nar' trains no GAR"),
        (dict(layout="valle"), "Unknown layout"),
        (dict(stage="ar+nar"), "Unknown stage"),
        (dict(mixed_precision="fp8"), "mixed_precision"),
        (dict(max_steps=0), "max_steps must be >= 1"),
        (dict(preset="huge"), "Unknown preset"),
        (dict(layout="vall-e", nar_frame_phonemes=True), "nar_frame_phonemes needs layout 'ella-v'"),
    ],
)
def test_bad_config_fails_fast(overrides, message):
    with pytest.raises(ValueError, match=message):
        recipe(**overrides).validate()


def test_config_file_errors(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"preset": "tiny", "learning_rat": 1e-3}))
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_file(tmp_path / "c.json")


def test_unprepared_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a prepared corpus"):
        train(recipe(), tmp_path, tmp_path / "run", progress=False)


def test_trainer_fine_tuning_example_runs(prepared_corpus, tmp_path):
    from ella_v_hf.training.finetune_trainer import finetune

    base = train(recipe(max_steps=2), prepared_corpus, tmp_path / "base", progress=False)
    final = finetune(base["model"], str(prepared_corpus), str(tmp_path / "ft"), max_steps=3, batch_size=4, learning_rate=1e-3)
    from ella_v_hf import EllaVForTextToSpeech

    tuned = EllaVForTextToSpeech.from_pretrained(final)
    original = EllaVForTextToSpeech.from_pretrained(base["model"])
    assert not torch.equal(tuned.gar.lm_head.weight, original.gar.lm_head.weight)  # the Trainer updated the GAR
    assert not torch.equal(tuned.nar.heads[0].weight, original.nar.heads[0].weight)  # ... and the NAR
    assert torch.equal(tuned.codec.codebooks, original.codec.codebooks)  # the codec stayed frozen
    # A corpus encoded with another codec (other weights, or another kind) is refused.
    import shutil

    from safetensors.torch import load_file, save_file

    other = tmp_path / "other_codec"
    shutil.copytree(prepared_corpus, other)
    state = load_file(str(other / "codec" / "model.safetensors"))
    state["codebooks"] = state["codebooks"] + 1.0
    save_file(state, str(other / "codec" / "model.safetensors"))
    with pytest.raises(ValueError, match="prepared with another codec.*other weights"):
        finetune(base["model"], str(other), str(tmp_path / "ft2"), max_steps=1)
    config = json.loads((other / "codec" / "config.json").read_text())
    config["codebook_size"] = config["codebook_size"] * 2
    (other / "codec" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="prepared with another codec.*codebook_size"):
        finetune(base["model"], str(other), str(tmp_path / "ft3"), max_steps=1)


def test_gradient_accumulation_keeps_the_schedule_in_updates(prepared_corpus, tmp_path):
    train(recipe(max_steps=8, gradient_accumulation_steps=2, warmup_steps=2), prepared_corpus, tmp_path / "run", progress=False)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"lr"' in line]
    assert len(lrs) == 8 and max(lrs) > 0 and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    # The scheduler moves once per optimizer update (every second batch), not once per batch.
    assert lrs[1] == lrs[2] and lrs[3] == lrs[4] and lrs[5] == lrs[6]
    assert len(set(lrs)) == 4  # 0 (start), 3 values after updates 1..3, 0 again at the end


def test_sigkill_then_resume_continues_from_the_last_good_checkpoint(prepared_corpus, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"preset": "tiny", "model_overrides": SMALL, "max_steps": 400, "warmup_steps": 2,
                                  "max_tokens_per_batch": 2500, "save_every": 4, "eval_every": 1000, "log_every": 1}))
    command = [sys.executable, "-m", "ella_v_hf.cli", "train", "--config", str(config), "--data", str(prepared_corpus), "--out", str(tmp_path / "run")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (tmp_path / "run" / "checkpoints" / "step-8").is_dir():
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    checkpoints = sorted(int(p.name[5:]) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert checkpoints and checkpoints[-1] >= 8
    short = json.loads(config.read_text()) | {"max_steps": checkpoints[-1] + 4}
    config.write_text(json.dumps(short))
    result = subprocess.run([*command, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == checkpoints[-1] + 4
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".tmp")]


def test_assemble_joins_a_gar_run_and_a_nar_run_in_fp16(prepared_corpus, tmp_path):
    from safetensors import safe_open

    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.processing import EllaVProcessor
    from ella_v_hf.training.assemble import assemble_checkpoint

    ar_recipe = recipe(max_steps=2, save_every=2, layout="vall-e", stage="gar", gar_text_dropout=0.2)  # a guided VALL-E GAR
    train(ar_recipe, prepared_corpus, tmp_path / "ar", progress=False)
    nar_recipe = recipe(max_steps=2, save_every=2, stage="nar", model_overrides={**SMALL, "num_hidden_layers": 1})
    train(nar_recipe, prepared_corpus, tmp_path / "nar", progress=False)
    out = assemble_checkpoint(tmp_path / "ar" / "model", tmp_path / "demo", nar_dir=tmp_path / "nar" / "model")
    gar_source = EllaVForTextToSpeech.from_pretrained(tmp_path / "ar" / "model")
    nar_source = EllaVForTextToSpeech.from_pretrained(tmp_path / "nar" / "model")
    model = EllaVForTextToSpeech.from_pretrained(out).eval()
    assert model.dtype == torch.float32  # fp16 on disk, float32 in memory
    assert model.config.gar_config.layout == "vall-e" and model.config.nar_config.num_hidden_layers == 1
    for mine, theirs in ((model.gar, gar_source.gar), (model.nar, nar_source.nar)):
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        for name, value in mine.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[name].half().float()), name
    for path in out.rglob("*.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            assert {handle.get_tensor(k).dtype for k in handle.keys()} <= {torch.float16, torch.int64, torch.bool}, path
    processor = EllaVProcessor.from_pretrained(out)
    assert model.aligner.dtype == torch.float32
    for guidance in (None, 2.0):
        result = model.generate(**processor(["Hello there."]), guidance_scale=guidance, vall_e_max_frames_per_phone=4)
        assert torch.isfinite(result.audio).all() and result.audio_lengths[0] > 0
    assert model.config.gar_config.text_dropout == 0.2
    assert json.loads((out / "assembled_from.json").read_text())["nar_trained_steps"] == 2
    # Decoding defaults for generation_config.json (`ella-v assemble --generation KEY=VALUE`).
    from ella_v_hf.cli import main as cli

    args = ["assemble", "--gar", str(tmp_path / "ar" / "model"), "--nar", str(tmp_path / "nar" / "model")]
    assert cli([*args, "--out", str(tmp_path / "tuned"), "--generation", "eop_quantile=0.5", "--generation", "nar_decoding=argmax"]) == 0
    tuned = EllaVForTextToSpeech.from_pretrained(tmp_path / "tuned")
    assert tuned.generation_config.eop_quantile == 0.5 and tuned.generation_config.nar_decoding == "argmax"
    assert model.generation_config.eop_quantile is None  # the plain assemble keeps the paper's decoding
    # Re-assembling a checkpoint (e.g. to embed a vocoder) keeps its decoding defaults; --generation still overrides.
    assert cli(["assemble", "--gar", str(tmp_path / "tuned"), "--out", str(tmp_path / "again"), "--generation", "top_p=0.8"]) == 0
    again = EllaVForTextToSpeech.from_pretrained(tmp_path / "again").generation_config
    assert again.eop_quantile == 0.5 and again.nar_decoding == "argmax" and again.top_p == 0.8
    for bad in ("eop_quantile=2", "no_such_field=1", "eop_quantile"):
        assert cli([*args, "--out", str(tmp_path / "bad"), "--generation", bad]) != 0
        assert not (tmp_path / "bad").exists()


def test_assemble_checks_generation_fields_before_loading(tmp_path):
    from ella_v_hf.training.assemble import assemble_checkpoint

    # No checkpoint exists at the paths: a bad field is reported first, without the loads.
    for bad, message in (({"eop_quantile": 2}, "eop_quantile"), ({"no_such_field": 1}, "unknown generation field")):
        with pytest.raises(ValueError, match=message):
            assemble_checkpoint(tmp_path / "missing", tmp_path / "out", generation=bad)
    assert not (tmp_path / "out").exists()


def test_assemble_refuses_checkpoints_with_different_codecs(prepared_corpus, tmp_path):
    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.training.assemble import assemble_checkpoint

    train(recipe(max_steps=1, save_every=1), prepared_corpus, tmp_path / "a", progress=False)
    other = EllaVForTextToSpeech.from_pretrained(tmp_path / "a" / "model")
    with torch.no_grad():
        next(other.codec.parameters()).add_(1.0)
    other.save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "trained_steps.txt").write_text("1")
    from ella_v_hf.processing import EllaVProcessor

    EllaVProcessor.from_pretrained(tmp_path / "a" / "model").save_pretrained(tmp_path / "b")
    with pytest.raises(ValueError, match="different codecs"):
        assemble_checkpoint(tmp_path / "a" / "model", tmp_path / "out", nar_dir=tmp_path / "b")
    assert not (tmp_path / "out").exists()


def test_resume_refuses_a_different_recipe(prepared_corpus, tmp_path):
    train(recipe(max_steps=2, save_every=2), prepared_corpus, tmp_path / "run", progress=False, stop_after=2)
    with pytest.raises(ValueError, match="another recipe .*layout differ"):
        train(recipe(max_steps=4, save_every=2, layout="vall-e"), prepared_corpus, tmp_path / "run", resume=True, progress=False)
    summary = train(recipe(max_steps=4, save_every=2), prepared_corpus, tmp_path / "run", resume=True, progress=False)  # longer: fine
    assert summary["step"] == 4


def test_assemble_never_replaces_a_directory_it_did_not_write(prepared_corpus, tmp_path):
    from ella_v_hf.training.assemble import assemble_checkpoint

    train(recipe(max_steps=1, save_every=1), prepared_corpus, tmp_path / "a", progress=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my work")
    with pytest.raises(ValueError, match="not empty and not an output of it"):
        assemble_checkpoint(tmp_path / "a" / "model", mine)
    assert (mine / "notes.txt").read_text() == "my work"
    out = assemble_checkpoint(tmp_path / "a" / "model", tmp_path / "demo")
    assert assemble_checkpoint(tmp_path / "a" / "model", out) == out  # its own output is replaced


def test_a_recipe_field_added_later_resumes_an_older_run_at_its_default(tmp_path):
    from dataclasses import dataclass

    from ella_v_hf.training.checkpointing import JsonRecipe, record_recipe

    @dataclass
    class Recipe(JsonRecipe):
        learning_rate: float = 0.01
        new_field: float = 0.0  # added after the run below was recorded

    (tmp_path / "recipe.json").write_text(json.dumps({"learning_rate": 0.001}))
    record_recipe(tmp_path, "recipe.json", Recipe(learning_rate=0.001), resuming=True)
    assert json.loads((tmp_path / "recipe.json").read_text()) == {"learning_rate": 0.001, "new_field": 0.0}
    (tmp_path / "recipe.json").write_text(json.dumps({"learning_rate": 0.001}))
    with pytest.raises(ValueError, match="another recipe .*new_field differ"):
        record_recipe(tmp_path, "recipe.json", Recipe(learning_rate=0.001, new_field=0.5), resuming=True)
    with pytest.raises(ValueError, match="another recipe .*learning_rate differ"):
        record_recipe(tmp_path, "recipe.json", Recipe(), resuming=True)


def test_a_worker_reading_the_recorded_recipe_never_sees_a_half_written_file(tmp_path):
    """On --resume every process of a distributed run reads the recorded recipe and corpus while the
    main process rewrites them: each rewrite must be one rename, or a reader parses an empty file."""
    import threading
    from dataclasses import dataclass

    from ella_v_hf.training.checkpointing import JsonRecipe, record_corpus, record_recipe

    @dataclass
    class Recipe(JsonRecipe):
        learning_rate: float = 0.01

    (tmp_path / "data").mkdir()
    record_recipe(tmp_path, "recipe.json", Recipe(), resuming=False)
    record_corpus(tmp_path, tmp_path / "data", resuming=False)
    done, errors = threading.Event(), []

    def worker() -> None:
        while not done.is_set():
            try:
                record_recipe(tmp_path, "recipe.json", Recipe(), resuming=True, write=False)
                record_corpus(tmp_path, tmp_path / "data", resuming=True, write=False)
            except ValueError as error:  # json.JSONDecodeError is a ValueError
                errors.append(error)
                return

    reader = threading.Thread(target=worker)
    reader.start()
    try:
        for _ in range(1500):
            record_recipe(tmp_path, "recipe.json", Recipe(), resuming=True)
            record_corpus(tmp_path, tmp_path / "data", resuming=True)
    finally:
        done.set()
        reader.join()
    assert not errors, errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.json", "data", "recipe.json"]  # no temporary left
