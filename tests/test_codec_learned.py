"""The learned embedded codec: interface shapes, the residual VQ with quantiser dropout, training
with `ella-v train-codec` (held-out loss, resume that matches an uninterrupted run), Auto loading."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from ella_v_hf.modeling import EllaVCodecConfig, EllaVCodecModel, EllaVTTSConfig
from ella_v_hf.modeling.codec_learned import ResidualVectorQuantizer
from ella_v_hf.modeling.loading import required_keys
from ella_v_hf.training.train_codec import CodecTrainConfig, _levels, train_codec

TINY_CODEC = dict(hidden_size=16, codebook_dim=8, num_codebooks=3, codebook_size=16, dilations=[1, 2], griffin_lim_iters=2)


def tiny_recipe(**overrides) -> CodecTrainConfig:
    return CodecTrainConfig(**{**dict(codec=TINY_CODEC, max_steps=6, batch_size=4, crop_frames=32, warmup_steps=2, eval_every=3,
                                      save_every=3, log_every=1, eval_fraction=0.2, eval_utterances=3), **overrides})


@pytest.mark.parametrize("downsample", [1, 2])
def test_encode_decode_shapes_and_first_k_codebooks(downsample):
    model = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC, downsample=downsample)).eval()
    assert model.config.frame_rate == 50.0 / downsample and model.config.samples_per_frame == 320 * downsample
    waveform = torch.randn(2, 1, 16000 + 100) * 0.1  # 1 s and a bit: frames round up
    codes = model.encode(waveform)
    frames = -(-(16000 + 100) // (320 * downsample))
    assert codes.shape == (2, 3, frames) and codes.dtype == torch.long and 0 <= codes.min() and codes.max() < 16
    for k in (1, 2, 3):  # any leading k codebooks decode
        audio = model.decode(codes[:, :k])
        assert audio.shape == (2, 1, frames * 320 * downsample) and torch.isfinite(audio).all()
    with pytest.raises(ValueError, match="4 codebooks given"):
        model.decode(torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes of codebook 0 must lie in \[0, 16\)"):
        model.decode(torch.full((1, 1, 5), 16))


def test_quantizer_dropout_uses_only_the_kept_levels():
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(3, 8, 4, decay=0.9, dead_code_threshold=0.1).train()
    latents = torch.randn(6, 50, 4)
    quantizer(latents, torch.full((6,), 3))  # k-means initialisation of every level from this batch
    assert quantizer.initialized.tolist() == [1.0, 1.0, 1.0]
    quantizer.eval()
    levels = torch.tensor([1, 1, 2, 2, 3, 3])
    quantized, _ = quantizer(latents, levels)
    codes = quantizer.quantize(latents)  # [B, K, T]
    for row, kept in enumerate(levels.tolist()):
        expected = quantizer.dequantize(codes[row : row + 1, :kept])[0]
        torch.testing.assert_close(quantized[row], expected)
    # Straight-through: the gradient reaches the latents.
    latents.requires_grad_(True)
    quantizer(latents, levels)[0].sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_a_smaller_first_codebook_uses_only_its_entries():
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(2, 16, 4, decay=0.5, dead_code_threshold=0.5, first_codebook_size=4).train()
    for _ in range(3):  # k-means, then EMA updates with dead-code restarts
        quantizer(torch.randn(4, 40, 4), torch.full((4,), 2))
    assert quantizer.codebooks[0, 4:].abs().sum() == 0 and quantizer.cluster_size[0, 4:].abs().sum() == 0
    assert quantizer.codebooks[0, :4].abs().sum() > 0 and quantizer.codebooks[1].abs().sum(-1).gt(0).all()
    codes = quantizer.eval().quantize(torch.randn(3, 50, 4))
    assert codes[:, 0].max() < 4 and codes[:, 1].max() >= 4  # the second level keeps all 16
    model = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC, first_codebook_size=5)).eval()
    assert model.encode(torch.randn(1, 1, 8000) * 0.1)[:, 0].max() < 5
    with pytest.raises(ValueError, match=r"codes of codebook 0 must lie in \[0, 5\)"):  # an unused entry is no code
        model.decode(torch.full((1, 1, 5), 5))
    assert model.decode(torch.tensor([[[4, 4], [15, 0]]])).shape == (1, 1, 2 * model.config.samples_per_frame)  # level 2 keeps all 16
    # The first level decoded from distributions over its 5 codes (first_level_decoding="expected"):
    # certain ones decode as the codes, a spread one as the mixture of its codes' vectors.
    codes = torch.tensor([[[4, 1, 2], [15, 0, 3]]])
    certain = torch.nn.functional.one_hot(codes[:, 0], 5).float()  # [1, 3, 5]
    torch.testing.assert_close(model.decode(codes, first_code_probabilities=certain), model.decode(codes))
    spread = torch.full((1, 3, 5), 0.2)
    first = model.quantizer.codebooks[0, :5].mean(0)
    torch.testing.assert_close(
        model.quantizer.dequantize(codes, first_probabilities=spread), first + model.quantizer.codebooks[1][codes[:, 1]]
    )
    with pytest.raises(ValueError, match="first_codebook_size must lie in"):
        EllaVCodecConfig(**TINY_CODEC, first_codebook_size=17)


def test_first_level_fraction_keeps_that_share_at_the_first_level():
    generator = torch.Generator().manual_seed(0)
    uniform = _levels(20000, 8, True, generator)
    biased = _levels(20000, 8, True, generator, first_fraction=0.5)
    assert abs(uniform.eq(1).float().mean() - 1 / 8) < 0.01
    assert abs(biased.eq(1).float().mean() - (0.5 + 0.5 / 8)) < 0.01  # the rest stay uniform in 1..8
    assert biased.min() == 1 and biased.max() == 8 and _levels(4, 8, False, generator).tolist() == [8] * 4
    with pytest.raises(ValueError, match="first_level_fraction must lie in"):
        tiny_recipe(first_level_fraction=1.0).validate()
    with pytest.raises(ValueError, match="needs quantizer_dropout"):
        tiny_recipe(first_level_fraction=0.5, quantizer_dropout=False).validate()


def test_saved_codec_leaves_out_the_ema_statistics(tmp_path):
    """save_pretrained drops the EMA training buffers (a run's checkpoint keeps them); loading gives
    zeros for them, and a file from before, with them, still loads them."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC)).eval()
    for buffer in (model.quantizer.codebooks, model.quantizer.embed_sum, model.quantizer.cluster_size):
        buffer.normal_()
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as saved:
        names = set(saved.keys())
    assert "quantizer.codebooks" in names and not {"quantizer.embed_sum", "quantizer.cluster_size"} & names
    loaded = AutoModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.quantizer.codebooks, model.quantizer.codebooks)
    assert not loaded.quantizer.embed_sum.any() and not loaded.quantizer.cluster_size.any()  # zeros, not uninitialised memory
    waveform = torch.randn(1, 1, 4000) * 0.1
    assert torch.equal(loaded.encode(waveform), model.encode(waveform))
    older = load_file(tmp_path / "model.safetensors") | {
        "quantizer.embed_sum": model.quantizer.embed_sum.contiguous(), "quantizer.cluster_size": model.quantizer.cluster_size.contiguous()
    }
    save_file(older, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = AutoModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.quantizer.embed_sum, model.quantizer.embed_sum)
    assert torch.equal(loaded.quantizer.cluster_size, model.quantizer.cluster_size)


def test_dead_codes_are_restarted():
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(1, 8, 2, decay=0.5, dead_code_threshold=0.5).train()
    quantizer(torch.randn(1, 64, 2), torch.ones(1, dtype=torch.long))
    for _ in range(5):  # later batches all sit in one place: the other codes die and restart there
        batch = torch.full((1, 64, 2), 3.0) + 0.01 * torch.randn(1, 64, 2)
        quantizer(batch, torch.ones(1, dtype=torch.long))
    near = (quantizer.codebooks[0] - 3.0).abs().max(-1).values < 0.1
    assert near.sum() > 1  # restarted codes were moved onto the new data


def test_train_codec_resume_matches_an_uninterrupted_run(flite_corpus, tmp_path):
    whole = train_codec(tiny_recipe(), flite_corpus, tmp_path / "whole", progress=False)
    assert whole["step"] == 6 and set(whole["eval"]) == {"level_1", "all"} and whole["eval_utterances"] > 0
    stopped = train_codec(tiny_recipe(), flite_corpus, tmp_path / "split", progress=False, stop_after=4)
    assert stopped["stopped_at"] == 4
    with pytest.raises(ValueError, match="pass --resume"):
        train_codec(tiny_recipe(), flite_corpus, tmp_path / "split", progress=False)
    with pytest.raises(ValueError, match="another recipe"):
        train_codec(tiny_recipe(learning_rate=0.5), flite_corpus, tmp_path / "split", resume=True, progress=False)
    train_codec(tiny_recipe(), flite_corpus, tmp_path / "split", resume=True, progress=False)  # from step 3
    a = AutoModel.from_pretrained(tmp_path / "whole" / "model")
    b = AutoModel.from_pretrained(tmp_path / "split" / "model")
    assert isinstance(a, EllaVCodecModel)
    for name, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[name], msg=name)
    records = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval_all" in r] == [3, 6]


def test_training_lowers_the_held_out_loss(flite_corpus, tmp_path):
    summary = train_codec(tiny_recipe(max_steps=40, eval_every=40, save_every=40, learning_rate=3e-3), flite_corpus, tmp_path / "run", progress=False)
    untrained = train_codec(tiny_recipe(max_steps=1, eval_every=1, save_every=1, learning_rate=1e-9), flite_corpus, tmp_path / "zero", progress=False)
    assert summary["eval"]["all"] < 0.8 * untrained["eval"]["all"]
    assert summary["eval"]["level_1"] < untrained["eval"]["level_1"]


def test_codec_is_an_auto_sub_model_of_the_composite(tmp_path):
    codec = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC))
    codec.save_pretrained(tmp_path)
    config = EllaVTTSConfig(gar_config=dict(num_phonemes=10), nar_config=dict(num_phonemes=10), codec_config=AutoConfig.from_pretrained(tmp_path))
    assert (config.gar_config.codebook_size, config.nar_config.num_codebooks, config.gar_config.frame_rate) == (16, 3, 50.0)
    assert EllaVTTSConfig.from_dict(config.to_dict()).codec_config.model_type == "ella_v_codec"
    assert "_name_or_path" not in config.to_dict()["codec_config"]


def test_train_codec_cli(flite_corpus, tmp_path):
    recipe = tmp_path / "codec.json"
    recipe.write_text(json.dumps({**tiny_recipe(max_steps=2, save_every=2, eval_every=2).__dict__}))
    command = [sys.executable, "-m", "ella_v_hf.cli", "train-codec", "--data", str(flite_corpus), "--out", str(tmp_path / "run"), "--config", str(recipe), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["step"] == 2
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "pass --resume" in again.stderr
    recipe.write_text(json.dumps({"codec": {"codebook_size": 1}}))
    bad = subprocess.run(command[:-1] + ["--resume"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "codebook_size >= 2" in bad.stderr


def test_the_bundled_codec_is_the_prepare_default():
    from ella_v_hf.processing.prepare import DEFAULT_CODEC_DIR, load_codec, prepare_corpus

    codec = load_codec("learned")
    assert isinstance(codec, EllaVCodecModel) and str(codec.name_or_path) == DEFAULT_CODEC_DIR
    config = codec.config
    assert (config.sampling_rate, config.frame_rate, config.num_codebooks, config.codebook_size) == (16000, 50.0, 8, 1024)
    assert codec.quantizer.initialized.all()  # trained, not a fresh instance
    import inspect

    assert inspect.signature(prepare_corpus).parameters["codec"].default == "learned"
    waveform = torch.randn(1, 1, 8000) * 0.1
    assert codec.decode(codec.encode(waveform)[:, :1]).shape == (1, 1, 8000)


def test_frame_phoneme_labels_follow_the_prepared_alignments(flite_corpus, prepared_corpus):
    from datasets import load_from_disk

    from ella_v_hf.training.train_codec import corpus_features, frame_phoneme_labels

    model = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC))
    utterances, features = corpus_features(model, flite_corpus, progress=False)
    labels, classes = frame_phoneme_labels(utterances, features, prepared_corpus)
    rows = {r["id"]: r for r in load_from_disk(str(prepared_corpus / "dataset"))}
    assert classes > max(max(r["phoneme_ids"]) for r in rows.values())
    for utterance, feature, label in zip(utterances, features, labels):
        assert label.shape == (len(feature),)
        if utterance.id not in rows:
            assert (label == -100).all()
            continue
        row = rows[utterance.id]
        spoken = [p for p, d in zip(row["phoneme_ids"], row["durations"]) if d > 0]
        runs = [int(v) for i, v in enumerate(label) if i == 0 or v != label[i - 1]]
        assert runs == [p for i, p in enumerate(spoken) if i == 0 or p != spoken[i - 1]]  # same phonemes, same order
    with pytest.raises(ValueError, match="not an `ella-v prepare` output"):
        frame_phoneme_labels(utterances, features, flite_corpus)


def test_phoneme_distillation_trains_a_phonetic_first_codebook(flite_corpus, prepared_corpus, tmp_path):
    recipe = tiny_recipe(max_steps=60, eval_every=60, save_every=60, learning_rate=1e-2, phoneme_loss_weight=1.0)
    summary = train_codec(recipe, flite_corpus, tmp_path / "run", progress=False, alignments=prepared_corpus)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["phoneme_loss"] for r in records if "phoneme_loss" in r]
    assert len(losses) == 60 and sum(losses[-10:]) < 0.9 * sum(losses[:10])  # measured: 3.35 vs 4.21 on average
    # Held-out frames: the classifier reads the phoneme from the first codebook well above chance (1/65).
    assert 0.1 < summary["eval"]["phone_accuracy"] <= 1
    saved = AutoModel.from_pretrained(tmp_path / "run" / "model")  # the classifier is not part of the codec
    assert isinstance(saved, EllaVCodecModel) and not any("head" in k for k in saved.state_dict())
    with pytest.raises(ValueError, match="needs alignments"):
        train_codec(recipe, flite_corpus, tmp_path / "other", progress=False)
    with pytest.raises(ValueError, match="phoneme_loss_weight and nar_fraction are 0"):
        train_codec(tiny_recipe(), flite_corpus, tmp_path / "other", progress=False, alignments=prepared_corpus)


def test_first_codebook_statistics(tmp_path):
    from datasets import Dataset

    from ella_v_hf.evaluation.measure_codec import first_codebook_statistics

    # Codes that copy the phoneme: nothing left to guess once the phoneme is known.
    rows = {"codes": [[[5, 5, 7, 7, 7]], [[5, 7]]], "phoneme_ids": [[5, 2, 7], [5, 7]], "durations": [[2, 0, 3], [1, 1]]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "copy" / "dataset"))
    stats = first_codebook_statistics(str(tmp_path / "copy"))
    assert stats["frames"] == 7 and stats["phoneme_purity"] == 1.0 and abs(stats["entropy_given_phoneme"]) < 1e-9
    assert abs(stats["entropy"] - -(3 / 7 * math.log(3 / 7) + 4 / 7 * math.log(4 / 7))) < 1e-9
    assert stats["mean_run_length"] == (5 / 2 + 2 / 2) / 2
    # Codes independent of the phoneme: knowing it does not help.
    rows = {"codes": [[[1, 2, 1, 2]]], "phoneme_ids": [[3, 4]], "durations": [[2, 2]]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "free" / "dataset"))
    stats = first_codebook_statistics(str(tmp_path / "free"))
    assert abs(stats["entropy_given_phoneme"] - math.log(2)) < 1e-9 and stats["phoneme_purity"] == 0.5
    # Per speaker: one whose codes copy the phoneme, one whose codes ignore it.
    rows = {"codes": [[[5, 5, 7]], [[1, 2, 1, 2]]], "phoneme_ids": [[5, 7], [3, 4]], "durations": [[2, 1], [2, 2]],
            "speaker_id": ["a", "b"]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "speakers" / "dataset"))
    stats = first_codebook_statistics(str(tmp_path / "speakers"), by_speaker=True)
    assert stats["frames"] == 7 and set(stats["by_speaker"]) == {"a", "b"}
    assert stats["by_speaker"]["a"]["phoneme_purity"] == 1.0 and stats["by_speaker"]["b"]["phoneme_purity"] == 0.5
    assert stats["by_speaker"]["a"]["phoneme_purity"] > stats["phoneme_purity"] > stats["by_speaker"]["b"]["phoneme_purity"]
    assert "by_speaker" not in first_codebook_statistics(str(tmp_path / "speakers"))
    with pytest.raises(ValueError, match="no speaker_id column"):
        first_codebook_statistics(str(tmp_path / "copy"), by_speaker=True)
    rows = {"codes": [[[1, 2, 1]]], "phoneme_ids": [[3, 4]], "durations": [[2, 2]]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "bad" / "dataset"))
    with pytest.raises(ValueError, match="alignment does not match its codes: The durations cover 4 frames, expected 3"):
        first_codebook_statistics(str(tmp_path / "bad"))


def test_a_corpus_prepared_with_a_saved_learned_codec_trains(flite_corpus, small_aligner, tmp_path):
    """A saved learned codec lacks its EMA statistics; `ella-v train` must still load it from the corpus."""
    from safetensors.torch import load_file

    from ella_v_hf.processing.prepare import prepare_corpus
    from ella_v_hf.training.trainer import TrainConfig, train

    EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC)).save_pretrained(tmp_path / "codec")
    small_aligner.save_pretrained(tmp_path / "aligner")
    prepare_corpus(flite_corpus, tmp_path / "prepared", codec="learned", codec_model=str(tmp_path / "codec"),
                   aligner_model=str(tmp_path / "aligner"), num_proc=1, progress=False)
    assert "quantizer.embed_sum" not in load_file(str(tmp_path / "prepared" / "codec" / "model.safetensors"))
    recipe = TrainConfig(preset="tiny", model_overrides={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64},
                         max_steps=2, warmup_steps=1, max_tokens_per_batch=2500, eval_every=100, save_every=100, eval_fraction=0.1)
    assert train(recipe, tmp_path / "prepared", tmp_path / "run", progress=False)["step"] == 2


def test_assemble_compares_codecs_without_their_ema_statistics():
    """A checkpoint saved before the EMA statistics were left out carries them, one saved after
    loads them as zeros: the same codec for `ella-v assemble`; another weight is not."""
    from ella_v_hf.training.assemble import _same_state

    torch.manual_seed(0)
    old = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC)).eval()
    statistics = [name for name, _ in old.named_buffers() if not required_keys(old, [name])]
    assert statistics  # the class lists its EMA statistics as optional
    with torch.no_grad():
        for name in statistics:
            old.get_buffer(name).uniform_(0.5, 1.0)  # a trained run's statistics
    new = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC)).eval()
    new.load_state_dict(old.state_dict())
    with torch.no_grad():
        for name in statistics:
            new.get_buffer(name).zero_()  # as a load of a file without them leaves them
    assert _same_state(old, new)
    with torch.no_grad():
        next(new.parameters()).add_(1.0)
    assert not _same_state(old, new)


def test_decoder_only_fine_tuning_keeps_the_codes_and_swaps_into_a_checkpoint(flite_corpus, tmp_path):
    """`train-codec --init-from CHECKPOINT --decoder-only`: encoder, quantiser and normalisation stay
    (same codes, so a GAR and NAR trained on them stay valid), the decoder learns on; `assemble
    --codec` embeds it, and refuses a codec whose codes would differ."""
    from conftest import save_tts_with_codec

    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.processing import load_audio, read_corpus
    from ella_v_hf.training.assemble import assemble_checkpoint

    base = train_codec(tiny_recipe(max_steps=6), flite_corpus, tmp_path / "base", progress=False)
    codec = EllaVCodecModel.from_pretrained(tmp_path / "base" / "model")
    save_tts_with_codec(codec, tmp_path / "tts")

    with pytest.raises(ValueError, match="needs init_from"):
        tiny_recipe(train_decoder_only=True).validate()
    with pytest.raises(ValueError, match="leave `codec` empty"):
        tiny_recipe(init_from=str(tmp_path / "tts")).validate()
    with pytest.raises(ValueError, match="phoneme_loss_weight"):
        tiny_recipe(codec={}, init_from=str(tmp_path / "tts"), train_decoder_only=True, phoneme_loss_weight=0.5).validate()
    recipe = tiny_recipe(codec={}, init_from=str(tmp_path / "tts"), train_decoder_only=True, max_steps=20, eval_every=10,
                         save_every=20, learning_rate=3e-3)
    tuned = train_codec(recipe, flite_corpus, tmp_path / "decoder", progress=False)  # from the TTS checkpoint's codec
    after = EllaVCodecModel.from_pretrained(tmp_path / "decoder" / "model").eval()
    mine, theirs = codec.state_dict(), after.state_dict()
    kept = required_keys(codec, mine.keys())
    assert all(torch.equal(mine[k], theirs[k]) for k in kept if not k.startswith("decoder."))
    assert not all(torch.equal(mine[k], theirs[k]) for k in kept if k.startswith("decoder."))
    assert tuned["eval"]["all"] < base["eval"]["all"] and tuned["parameters"] == sum(p.numel() for p in codec.parameters())
    wave, rate = load_audio(read_corpus(flite_corpus)[0][0].audio_path)
    wave = torch.as_tensor(wave, dtype=torch.float32)[None]
    assert torch.equal(codec.eval().encode(wave), after.encode(wave))

    out = assemble_checkpoint(tmp_path / "tts", tmp_path / "out", codec_dir=tmp_path / "decoder" / "model", remote_code=False)
    swapped = EllaVForTextToSpeech.from_pretrained(out)
    for name, value in swapped.codec.state_dict().items():
        if name in theirs and name in kept:
            assert torch.equal(value, theirs[name].half().float()), name
    assert json.loads((out / "assembled_from.json").read_text())["codec_from"].endswith("decoder/model")
    with torch.no_grad():
        after.encoder[0].weight.add_(0.1)  # other codes: refused, nothing written
    after.save_pretrained(tmp_path / "foreign")
    with pytest.raises(ValueError, match="only the decoder and the waveform stage may change"):
        assemble_checkpoint(tmp_path / "tts", tmp_path / "out2", codec_dir=tmp_path / "foreign")
    assert not (tmp_path / "out2").exists()


def test_decoder_fine_tuning_on_the_latents_the_nar_gives(flite_corpus, prepared_corpus, tmp_path):
    """`nar_fraction`: the decoder of a TTS checkpoint's codec learns from the latents synthesis
    decodes (the true first codebook, codebooks 2..K as the expected vectors of the checkpoint's
    NAR given the aligned phonemes) instead of true codes only: the codes stay, those latents are
    exactly what the checkpoint's own NAR path gives for a GAR sequence of the true first codebook,
    and the decoder trained on them reconstructs from them better than one trained on true codes."""
    import dataclasses

    from conftest import save_tts_with_codec

    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.modeling.sequence_layout import build_gar_sequence, parse_gar_sequence
    from ella_v_hf.processing import load_audio, read_corpus
    from ella_v_hf.training.nar_latents import nar_latents, prepared_rows
    from ella_v_hf.training.train_codec import corpus_features, frame_phoneme_labels, reconstruction_losses

    train_codec(tiny_recipe(max_steps=6), flite_corpus, tmp_path / "base", progress=False)
    codec = EllaVCodecModel.from_pretrained(tmp_path / "base" / "model").eval()
    save_tts_with_codec(codec, tmp_path / "tts", frame_phonemes=True)
    with pytest.raises(ValueError, match=r"decoder_latents must be \[1, 4, 8\]"):
        codec(torch.zeros(1, 4, codec.config.n_mels), decoder_latents=torch.zeros(1, 3, 8))
    recipe = tiny_recipe(codec={}, init_from=str(tmp_path / "tts"), train_decoder_only=True, nar_fraction=1.0, max_steps=30,
                         eval_every=30, save_every=30, learning_rate=3e-3)
    with pytest.raises(ValueError, match="set train_decoder_only"):
        dataclasses.replace(recipe, train_decoder_only=False).validate()
    with pytest.raises(ValueError, match=r"nar_fraction must lie in \[0, 1\]"):
        dataclasses.replace(recipe, nar_fraction=1.5).validate()
    with pytest.raises(ValueError, match="nar_fraction > 0 needs alignments"):
        train_codec(recipe, flite_corpus, tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="not an ELLA-V/VALL-E TTS checkpoint"):  # a codec directory has no NAR
        train_codec(dataclasses.replace(recipe, init_from=str(tmp_path / "base" / "model")), flite_corpus, tmp_path / "y",
                    progress=False, alignments=prepared_corpus)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

    # The latents are the ones synthesis decodes: the GAR sequence of the true first codebook, parsed
    # as generation parses it, through the checkpoint's NAR (its frame phonemes from that sequence).
    tts = EllaVForTextToSpeech.from_pretrained(tmp_path / "tts").eval()
    space, spec = tts.config.gar_config.token_space, tts.config.gar_config.layout_spec
    utterances, features = corpus_features(codec, flite_corpus, progress=False)
    normalised = [((f - codec.feature_mean.numpy()) / codec.feature_std.numpy()).astype(np.float32) for f in features]
    labels, _ = frame_phoneme_labels(utterances, features, prepared_corpus)
    rows, _ = prepared_rows(prepared_corpus)
    made = nar_latents(tts, codec, utterances, normalised, labels, rows, progress=False)
    compared = 0
    for utterance, feature, latents in zip(utterances, normalised, made):
        if latents is None or sum(rows[utterance.id][1]) != len(feature):
            continue
        phonemes, durations = rows[utterance.id]
        codes = codec.quantizer.quantize(codec.latents(torch.from_numpy(feature)[None]))[0]  # [K, T]
        parsed = parse_gar_sequence(build_gar_sequence(phonemes, durations, codes[0].tolist(), space, spec).input_ids, space, spec)
        with torch.no_grad():
            completed, probabilities = tts._nar_decode(phonemes, codes[0], None, parsed, return_probabilities=True)
            expected = codec.quantizer.dequantize(completed[None], probabilities[None])[0]  # [T, D]
        assert torch.allclose(torch.from_numpy(latents), expected, atol=1e-5)
        assert not torch.allclose(expected, codec.quantizer.dequantize(codes[None])[0], atol=1e-3)  # not the true codes'
        compared += 1
    assert compared >= 3

    summary = train_codec(recipe, flite_corpus, tmp_path / "nar", progress=False, alignments=prepared_corpus)
    plain = train_codec(dataclasses.replace(recipe, nar_fraction=0.0), flite_corpus, tmp_path / "plain", progress=False)
    after = EllaVCodecModel.from_pretrained(tmp_path / "nar" / "model").eval()
    wave = torch.as_tensor(load_audio(read_corpus(flite_corpus)[0][0].audio_path)[0], dtype=torch.float32)[None]
    assert torch.equal(codec.encode(wave), after.encode(wave))  # the codes the GAR and NAR were trained on
    assert "nar" not in plain["eval"] and "nar" in summary["eval"]
    first = json.loads((tmp_path / "nar" / "log.jsonl").read_text().splitlines()[0])  # the baseline: the starting decoder
    assert first["step"] == 0 and {"eval_level_1", "eval_all", "eval_nar"} <= first.keys()

    pairs = [(torch.from_numpy(f[: len(lat)]), torch.from_numpy(lat)) for f, lat in zip(normalised, made) if lat is not None]
    on_nar = reconstruction_losses(after, [], nar=pairs)["nar"]
    on_true = reconstruction_losses(EllaVCodecModel.from_pretrained(tmp_path / "plain" / "model").eval(), [], nar=pairs)["nar"]
    assert on_nar < on_true
