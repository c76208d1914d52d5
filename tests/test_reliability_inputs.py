"""Inputs that once gave a silent wrong result or an unclear error: each now behaves as stated."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import warnings
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from ella_v_hf import EllaVForCausalLM, cli
from ella_v_hf.modeling.loading import WeightsMismatchError


def error_of(capsys, *argv: str) -> str:
    """Run the CLI in this process; the one error line it printed (exit code 2)."""
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# -- synthesize's arguments -----------------------------------------------------------------------
def test_synthesize_arguments_get_specific_errors(tmp_path, capsys):
    out = str(tmp_path / "x.wav")
    assert "seed must be a whole number from 0 to" in error_of(capsys, "synthesize", "Hi.", "-o", out, "--seed", str(2**70))
    assert "temperature must be a finite number > 0" in error_of(capsys, "synthesize", "Hi.", "-o", out, "--temperature", "inf")
    assert "--prompt-text is the transcript of --prompt-audio" in error_of(capsys, "synthesize", "Hi.", "-o", out, "--prompt-text", "Hi.")
    assert f"--prompt-audio {tmp_path} is a directory" in error_of(
        capsys, "synthesize", "Hi.", "-o", out, "--prompt-audio", str(tmp_path), "--prompt-text", "Hi.")
    (tmp_path / "lines.bin").write_bytes(bytes(range(256)))
    assert "is not UTF-8 text" in error_of(capsys, "synthesize", "-o", out, "--batch-file", str(tmp_path / "lines.bin"))
    (tmp_path / "nul.txt").write_bytes(b"Hello\x00there\n")
    assert "holds binary data" in error_of(capsys, "synthesize", "-o", out, "--batch-file", str(tmp_path / "nul.txt"))
    assert not (tmp_path / "x.wav").exists()


def test_a_batch_file_reports_physical_line_numbers(tmp_path, capsys):
    (tmp_path / "lines.txt").write_text("First line.\n\n🙂🙂\nFourth line.\n", encoding="utf-8")
    assert cli.main(["synthesize", "-o", str(tmp_path / "out.wav"), "--batch-file", str(tmp_path / "lines.txt"), "--greedy"]) == 2
    err = capsys.readouterr().err
    assert "line 3:" in err and "(lines [3])" in err


def test_evaluate_strategy_with_a_non_number_names_the_option():
    from ella_v_hf.evaluation.evaluate_tts import parse_strategy

    with pytest.raises(ValueError, match=r"'top_p=banana' in the strategy 'top_p=banana': top_p takes a number, got 'banana'"):
        parse_strategy("top_p=banana")
    with pytest.raises(ValueError, match="top_k takes a whole number"):
        parse_strategy("top_k=2.5")


# -- training: logs, checkpoints, corpora ----------------------------------------------------------
def test_a_torn_last_log_line_is_skipped_with_a_warning_and_a_torn_middle_line_named(tmp_path):
    from ella_v_hf.training.checkpointing import trim_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    with pytest.warns(UserWarning, match="torn last line 3"):
        trim_log(tmp_path, 2)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    log.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"log.jsonl, line 2: not a JSON record"):
        trim_log(tmp_path, 2)


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(prepared_corpus, tmp_path):
    from ella_v_hf.training.trainer import TrainConfig, train

    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    recipe = TrainConfig(model_overrides=small, max_steps=2, warmup_steps=1, save_every=1, keep_last=2, log_every=1,
                         max_tokens_per_batch=2500)
    train(recipe, prepared_corpus, tmp_path / "run", progress=False)
    newest = tmp_path / "run" / "checkpoints" / "step-2"
    weights = next(newest.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match=r"cannot resume from .*step-2"):
        summary = train(TrainConfig(**{**recipe.__dict__, "max_steps": 3}), prepared_corpus, tmp_path / "run", resume=True, progress=False)
    assert summary["step"] == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "lr" in r] == [1, 2, 3]  # resumed at step 1: step 2 redone, logged once


def test_resume_refuses_another_prepared_corpus(tmp_path):
    from ella_v_hf.training.checkpointing import record_corpus

    for name, fingerprint in (("a", "1111"), ("b", "2222")):
        (tmp_path / name / "dataset").mkdir(parents=True)
        (tmp_path / name / "dataset" / "state.json").write_text(json.dumps({"_fingerprint": fingerprint}))
    (tmp_path / "run").mkdir()
    record_corpus(tmp_path / "run", tmp_path / "a", resuming=False)
    record_corpus(tmp_path / "run", tmp_path / "a", resuming=True)  # the same corpus: fine
    with pytest.raises(ValueError, match="trained on another prepared corpus"):
        record_corpus(tmp_path / "run", tmp_path / "b", resuming=True)


def test_ctrl_c_in_a_command_is_one_line_with_the_way_to_continue(monkeypatch, capsys):
    from ella_v_hf.training import trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    assert cli.main(["train", "--config", str(Path(trainer.__file__).parent / "configs" / "tiny-ella-v.json"),
                     "--data", "d", "--out", "o"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "ella-v train: interrupted; run it again with --resume to continue from the last checkpoint"


def test_disk_full_advice_fits_the_command():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert "--resume" in cli.describe_error(full, "train")
    assert "--resume" not in cli.describe_error(full, "prepare") and "finished steps are reused" in cli.describe_error(full, "prepare")


# -- weights ----------------------------------------------------------------------------------------
def test_weights_stored_with_a_wrong_dtype_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    model = EllaVForCausalLM(tiny_config())
    model.save_pretrained(tmp_path / "gar")
    path = tmp_path / "gar" / "model.safetensors"
    tensors = load_file(path)
    name = next(k for k in tensors if k.endswith("q_proj.weight"))
    tensors[name] = tensors[name].to(torch.int8)  # all zeros after the cast
    with open(path, "rb") as handle:
        metadata = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0])).get("__metadata__")
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(WeightsMismatchError, match=rf"dtype that does not fit them \['{name} \(I8\)'\]"):
        EllaVForCausalLM.from_pretrained(tmp_path / "gar")


def test_a_tensor_of_another_shape_is_named_with_both_shapes(tmp_path):
    from safetensors.torch import load_file, save_file

    EllaVForCausalLM(tiny_config()).save_pretrained(tmp_path / "gar")
    path = tmp_path / "gar" / "model.safetensors"
    tensors = load_file(path)
    name = next(k for k in tensors if k.endswith("q_proj.weight"))
    tensors[name] = tensors[name][:, :-1].contiguous()
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(WeightsMismatchError, match=rf"{name}: stored \[32, 31\], model \[32, 32\]"):
        EllaVForCausalLM.from_pretrained(tmp_path / "gar")


# -- prepare's cache --------------------------------------------------------------------------------
def test_the_audio_cache_key_follows_the_content_and_a_reloaded_model_keeps_its_key(tmp_path, small_aligner):
    from ella_v_hf.modeling import EllaVAlignerModel
    from ella_v_hf.processing.prepare import _file_key, _model_key

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF" + bytes(5000))
    before = _file_key(str(audio))
    audio.write_bytes(b"RIFF" + bytes(4999) + b"\x01")  # same size, other content (normalised in place)
    os.utime(audio, ns=(before[1], before[1]))  # even with the old modification time
    assert _file_key(str(audio)) != before
    small_aligner.save_pretrained(tmp_path / "aligner")
    assert _model_key(EllaVAlignerModel.from_pretrained(tmp_path / "aligner")) == _model_key(small_aligner)


# -- text ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "spoken"), [
    ("The U.S.A. and the U.K.", "the you ess eh and the you kay."),
    ("A.I. at I.B.M.", "eh eye at eye bee em."),
    ("Visit example.com today.", "visit example dot com today."),
    ("Write to user@host.org now.", "write to user at host dot org now."),
    ("See https://www.example.com/a-b", "see w w w dot example dot com slash a dash b"),
    ("Install v2.0.1 today.", "install version two point zero point one today."),
    ("Add ½ cup, then 3½ more.", "add one half cup, then three and a half more."),
    ("It is 50°C, or 122°F.", "it is fifty degrees celsius, or one hundred and twenty-two degrees fahrenheit."),
    ("Drive 5 km.", "drive five kilometres."),
])
def test_acronyms_addresses_versions_fractions_and_units_are_read_out(text, spoken):
    from ella_v_hf.processing.text_normalization import normalize_text

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert normalize_text(text).lower() == spoken


def test_no_unknown_symbols_are_left_for_these_forms():
    from ella_v_hf.processing import EllaVPhonemeTokenizer

    tokenizer = EllaVPhonemeTokenizer()
    ids = tokenizer("U.S.A., example.com, user@host.org, v2.0.1, ½ and 50°C.")["input_ids"]
    assert tokenizer.unk_token_id not in ids



# -- prepare screens garbage ---------------------------------------------------------------------------
def test_prepare_drops_garbage_before_fitting_and_says_why(flite_corpus, small_codec, small_aligner, tmp_path):
    import csv

    import numpy as np
    import soundfile as sf

    from ella_v_hf.processing.prepare import prepare_corpus

    corpus = tmp_path / "corpus"
    shutil.copytree(flite_corpus, corpus, ignore=shutil.ignore_patterns(".ella-v*"))
    speech, rate = sf.read(corpus / "audio" / "slt" / "slt_00000.wav", dtype="float32")
    rng = np.random.default_rng(0)
    garbage = {
        "silence.wav": (np.zeros(5 * rate, np.float32), "The boy was there when the sun rose."),
        "noise.wav": ((0.1 * rng.standard_normal(4 * rate)).astype(np.float32), "The boy was there when the sun rose."),
        "long_silence.wav": (np.concatenate([speech[: 2 * rate], np.zeros(int(17.5 * rate), np.float32)]), "The boy was there."),
        "wrong_text.wav": (speech, "The boy was there when the sun rose. " * 4),
    }
    with open(corpus / "metadata.csv", "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for name, (wave, text) in garbage.items():
            sf.write(corpus / name, wave, rate)
            writer.writerow([name, text, "slt"])
    small_codec.save_pretrained(tmp_path / "codec")
    small_aligner.save_pretrained(tmp_path / "aligner")
    summary = prepare_corpus(corpus, tmp_path / "out", codec="auto", codec_model=str(tmp_path / "codec"),
                             aligner_model=str(tmp_path / "aligner"), num_proc=1, progress=False)
    reasons = {item["id"]: item["reason"] for item in summary.skipped}
    assert reasons["silence"].startswith("no signal")
    assert reasons["noise"].startswith("no voiced speech")
    assert reasons["long_silence"].startswith("mostly silence")
    assert reasons["wrong_text"].startswith("the transcript does not fit the audio")
    assert summary.utterances == 24  # every genuine utterance kept
    assert summary.skipped_by_reason["no signal"] == 1 and "screen" in summary.seconds


def test_libsndfiles_bare_system_error_is_named_as_a_failed_write():
    assert "most likely because the disk is full" in cli.describe_error(RuntimeError("System error."), "synthesize")
