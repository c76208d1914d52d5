"""The learned waveform stage: the vocoder's shapes, the codec choosing its waveform stage (Griffin-Lim
stays available), save/load, and `ella-v train-vocoder` (frozen codec, exact resume, lower loss)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel

from ella_v_hf.modeling import EllaVCodecConfig, EllaVCodecModel
from ella_v_hf.modeling.vocoder import IstftVocoder
from ella_v_hf.training.train_vocoder import VocoderTrainConfig, stft_loss, train_vocoder, with_vocoder

TINY_CODEC = dict(hidden_size=16, codebook_dim=8, num_codebooks=3, codebook_size=16, dilations=[1, 2], griffin_lim_iters=2)
TINY_VOCODER = dict(hidden_size=16, intermediate_size=32, layers=2, n_fft=640)


def tiny_recipe(**overrides) -> VocoderTrainConfig:
    return VocoderTrainConfig(**{**dict(vocoder=TINY_VOCODER, max_steps=6, batch_size=3, crop_frames=16, warmup_steps=1, eval_every=3,
                                        save_every=3, log_every=1, eval_fraction=0.2, eval_utterances=2), **overrides})


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory, flite_corpus):
    """A tiny learned codec whose normalisation fits the flite corpus (random weights otherwise)."""
    from ella_v_hf.training.train_codec import CodecTrainConfig, train_codec

    out = tmp_path_factory.mktemp("codec")
    recipe = CodecTrainConfig(codec=TINY_CODEC, max_steps=2, batch_size=2, crop_frames=32, warmup_steps=1, eval_every=2, save_every=2)
    return train_codec(recipe, flite_corpus, out, progress=False)["model"]


@pytest.mark.parametrize("frames", [1, 3, 50])
def test_vocoder_maps_frames_to_hops(frames):
    vocoder = IstftVocoder(n_mels=80, hidden_size=8, intermediate_size=16, num_layers=1, n_fft=1280, hop_length=320)
    assert vocoder(torch.randn(2, frames, 80)).shape == (2, frames * 320)
    with pytest.raises(ValueError, match="n_fft must be even"):
        IstftVocoder(80, 8, 16, 1, n_fft=200, hop_length=320)


def test_codec_chooses_its_waveform_stage_and_keeps_griffin_lim(tmp_path):
    plain = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC)).eval()
    assert plain.vocoder is None
    codes = plain.encode(torch.randn(1, 1, 6400) * 0.1)  # [1, 3, 20]
    with pytest.raises(ValueError, match="no vocoder"):
        plain.decode(codes, waveform_decoder="vocos")
    with pytest.raises(ValueError, match="waveform_decoder must be one of"):
        EllaVCodecConfig(waveform_decoder="hifigan")

    voiced = with_vocoder(plain, TINY_VOCODER).eval()
    assert voiced.config.waveform_decoder == "vocos" and voiced.config.vocoder_n_fft == 640
    for name, value in plain.state_dict().items():  # everything but the vocoder is the codec's own
        torch.testing.assert_close(voiced.state_dict()[name], value)
    waveform = torch.randn(1, 1, 6400) * 0.1
    torch.testing.assert_close(voiced.encode(waveform), plain.encode(waveform))
    log_mel = voiced.decode_features(codes)
    expected = voiced.vocoder((log_mel - voiced.feature_mean) / voiced.feature_std)
    torch.testing.assert_close(voiced.decode(codes)[:, 0], expected)
    torch.testing.assert_close(voiced.decode(codes, waveform_decoder="griffin-lim"), plain.decode(codes))

    voiced.save_pretrained(tmp_path / "codec")
    loaded = AutoModel.from_pretrained(tmp_path / "codec").eval()
    assert isinstance(loaded, EllaVCodecModel) and loaded.vocoder is not None
    torch.testing.assert_close(loaded.decode(codes), voiced.decode(codes))
    assert with_vocoder(loaded, {}).vocoder is not None  # a codec with a vocoder of that size keeps its weights
    torch.testing.assert_close(with_vocoder(loaded, {}).eval().decode(codes), voiced.decode(codes))


def test_a_codec_saved_without_its_vocoder_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    voiced = with_vocoder(EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC)), TINY_VOCODER)
    voiced.save_pretrained(tmp_path / "codec")
    weights = load_file(tmp_path / "codec" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("vocoder.")}, tmp_path / "codec" / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(Exception, match="vocoder"):
        EllaVCodecModel.from_pretrained(tmp_path / "codec")


def test_stft_loss_is_zero_for_the_same_signal_and_grows_with_noise():
    clean = torch.sin(torch.arange(8000) / 8.0)[None]
    assert float(stft_loss(clean, clean, [[512, 128]])) < 1e-5
    light = float(stft_loss(clean + 0.01 * torch.randn_like(clean), clean, [[512, 128], [256, 64]]))
    heavy = float(stft_loss(clean + 0.3 * torch.randn_like(clean), clean, [[512, 128], [256, 64]]))
    assert 0 < light < heavy


def test_train_vocoder_freezes_the_codec_and_resumes_exactly(flite_corpus, codec_dir, tmp_path):
    whole = train_vocoder(tiny_recipe(), codec_dir, flite_corpus, tmp_path / "whole", progress=False)
    assert whole["step"] == 6 and set(whole["eval"]) == {"own_mel_loss", "own_stft_loss", "codes_mel_loss", "codes_stft_loss"}
    stopped = train_vocoder(tiny_recipe(), codec_dir, flite_corpus, tmp_path / "split", progress=False, stop_after=4)
    assert stopped["stopped_at"] == 4
    with pytest.raises(ValueError, match="pass --resume"):
        train_vocoder(tiny_recipe(), codec_dir, flite_corpus, tmp_path / "split", progress=False)
    train_vocoder(tiny_recipe(), codec_dir, flite_corpus, tmp_path / "split", resume=True, progress=False)
    a, b = (AutoModel.from_pretrained(tmp_path / run / "model") for run in ("whole", "split"))
    codec = AutoModel.from_pretrained(codec_dir)
    assert a.config.waveform_decoder == "vocos"
    for name, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[name], msg=name)
        if not name.startswith("vocoder."):  # the codec is frozen: its codes, and every model trained on them, stay valid
            torch.testing.assert_close(value, codec.state_dict()[name], msg=name)
    records = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval_own_mel_loss" in r] == [3, 6]


def test_training_lowers_the_held_out_vocoder_loss(flite_corpus, codec_dir, tmp_path):
    recipe = dict(max_steps=60, eval_every=60, save_every=60, learning_rate=3e-3, batch_size=4)
    trained = train_vocoder(tiny_recipe(**recipe), codec_dir, flite_corpus, tmp_path / "run", progress=False)
    untrained = train_vocoder(tiny_recipe(max_steps=1, eval_every=1, save_every=1, learning_rate=1e-9), codec_dir, flite_corpus,
                              tmp_path / "zero", progress=False)
    assert trained["eval"]["own_stft_loss"] < 0.5 * untrained["eval"]["own_stft_loss"]
    assert trained["eval"]["codes_stft_loss"] < 0.5 * untrained["eval"]["codes_stft_loss"]
    assert trained["eval"]["own_mel_loss"] < untrained["eval"]["own_mel_loss"]


def test_train_vocoder_cli_refuses_a_missing_codec(flite_corpus, tmp_path):
    result = subprocess.run([sys.executable, "-m", "ella_v_hf.cli", "train-vocoder", "--codec", str(tmp_path / "none"), "--data",
                             str(flite_corpus), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode != 0 and "no trained codec there" in result.stderr
    assert not (tmp_path / "out").exists()


def test_measure_codec_takes_either_waveform_stage(flite_corpus, tmp_path):
    from ella_v_hf.evaluation.measure_codec import measure_codec
    from ella_v_hf.evaluation.resynthesis import waveform_stage_ceiling
    from ella_v_hf.processing import load_audio, read_corpus

    class CountingASR:
        calls = 0

        def transcribe(self, waveform, rate):
            CountingASR.calls += 1
            return "text"

    plain = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC)).eval()
    voiced = with_vocoder(plain, TINY_VOCODER).eval()
    voiced.save_pretrained(tmp_path / "voiced")
    plain.save_pretrained(tmp_path / "plain")
    waveform, rate = load_audio(read_corpus(flite_corpus)[0][0].audio_path)
    vocoded = waveform_stage_ceiling(voiced, waveform, rate)  # the codec's own stage: its vocoder
    log_mel = voiced.frontend(torch.from_numpy(waveform)[None])  # 16 kHz already
    np_expected = voiced.to_waveform(log_mel, "vocos")[0].numpy()
    assert vocoded.shape == np_expected.shape and (vocoded == np_expected).all()
    result = measure_codec(str(tmp_path / "voiced"), str(flite_corpus), n=1, levels=[1], progress=False, asr=CountingASR(), stages=True)
    assert result["config"]["waveform_decoder"] == "vocos"
    result = measure_codec(str(tmp_path / "voiced"), str(flite_corpus), n=1, levels=[1], progress=False, asr=CountingASR(),
                           waveform_decoder="griffin-lim")
    assert result["config"]["waveform_decoder"] == "griffin-lim"
    with pytest.raises(ValueError, match="has no vocoder"):
        measure_codec(str(tmp_path / "plain"), str(flite_corpus), n=1, progress=False, asr=CountingASR(), waveform_decoder="vocos")


def test_adversarial_training_resumes_exactly_and_logs_its_losses(flite_corpus, codec_dir, tmp_path):
    recipe = dict(max_steps=4, eval_every=4, save_every=2, adversarial_weight=0.1, feature_matching_weight=0.2, discriminator_channels=4,
                  stft_resolutions=[[256, 64], [512, 128]], discriminator_resolutions=[[256, 64], [512, 128]])
    whole = train_vocoder(tiny_recipe(**recipe), codec_dir, flite_corpus, tmp_path / "whole", progress=False)
    assert {"discriminator_loss", "adversarial_loss", "feature_matching_loss"} <= set(whole["last"])
    train_vocoder(tiny_recipe(**recipe), codec_dir, flite_corpus, tmp_path / "split", progress=False, stop_after=2)
    train_vocoder(tiny_recipe(**recipe), codec_dir, flite_corpus, tmp_path / "split", resume=True, progress=False)
    a, b = (AutoModel.from_pretrained(tmp_path / run / "model") for run in ("whole", "split"))
    assert not any("discriminator" in name for name in a.state_dict())  # training only: never saved with the codec
    for name, value in a.state_dict().items():  # the discriminator's state was restored too
        torch.testing.assert_close(value, b.state_dict()[name], msg=name)
    with pytest.raises(ValueError, match="feature_matching_weight needs the discriminator"):
        tiny_recipe(feature_matching_weight=1.0).validate()


def test_discriminator_losses():
    from ella_v_hf.training.discriminators import (
        MultiResolutionDiscriminator,
        discriminator_loss,
        feature_matching_loss,
        generator_loss,
    )

    discriminator = MultiResolutionDiscriminator([[256, 64], [512, 128]], channels=4).requires_grad_(False)
    real, fake = torch.randn(2, 4000), torch.randn(2, 4000)
    judged_real, judged_fake = discriminator(real), discriminator(fake)
    assert len(judged_real) == 2 and len(judged_real[0][1]) == 5
    assert float(feature_matching_loss(judged_real, discriminator(real))) == 0.0
    assert float(feature_matching_loss(judged_real, judged_fake)) > 0
    assert float(discriminator_loss(judged_real, judged_fake)) >= 0 and float(generator_loss(judged_fake)) >= 0


def test_waveform_stage_bench_times_both_stages(flite_corpus, tmp_path):
    from ella_v_hf.evaluation.bench_waveform_stage import bench_waveform_stage

    plain = EllaVCodecModel(EllaVCodecConfig(**TINY_CODEC)).eval()
    plain.save_pretrained(tmp_path / "plain")
    with_vocoder(plain, TINY_VOCODER).save_pretrained(tmp_path / "voiced")
    result = bench_waveform_stage(str(tmp_path / "voiced"), str(flite_corpus), n=2, repeats=1)
    assert result["utterances"] == 2 and result["audio_seconds"] > 0
    assert result["rtf_griffin_lim"] > 0 and result["rtf_vocos"] > 0
    assert result["vocos_speedup"] > 0 and result["griffin_lim_iters"] == TINY_CODEC["griffin_lim_iters"]
    with pytest.raises(ValueError, match="no vocoder"):
        bench_waveform_stage(str(tmp_path / "plain"), str(flite_corpus), n=1, repeats=1)


def test_assemble_embeds_a_trained_vocoder_and_refuses_other_codes(codec_dir, tmp_path):
    """`ella-v assemble --codec VOCODER_RUN/model`: a checkpoint's codec gains the vocoder trained
    for it (its codes, so its GAR and NAR, stay valid) and decodes with it; a codec whose code
    configuration differs is refused and nothing is written."""
    from conftest import save_tts_with_codec

    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.training.assemble import assemble_checkpoint

    codec = EllaVCodecModel.from_pretrained(codec_dir).eval()
    save_tts_with_codec(codec, tmp_path / "tts")
    voiced = with_vocoder(codec, {**TINY_VOCODER}).eval()
    voiced.config.griffin_lim_sharpening = 2.0  # a waveform-stage setting: allowed to differ
    voiced.save_pretrained(tmp_path / "voiced")

    out = assemble_checkpoint(tmp_path / "tts", tmp_path / "out", codec_dir=tmp_path / "voiced", half=False, remote_code=False)
    swapped = EllaVForTextToSpeech.from_pretrained(out).eval()
    assert swapped.codec.config.waveform_decoder == "vocos" and swapped.codec.config.vocoder_n_fft == TINY_VOCODER["n_fft"]
    assert swapped.codec.config.griffin_lim_sharpening == 2.0
    for name, value in voiced.state_dict().items():
        torch.testing.assert_close(swapped.codec.state_dict()[name], value, msg=name)
    codes = codec.encode(torch.randn(1, 1, 6400) * 0.1)  # [1, K, 20]
    torch.testing.assert_close(swapped.codec.decode(codes), voiced.decode(codes))
    assert json.loads((out / "assembled_from.json").read_text())["codec_from"].endswith("voiced")

    other = EllaVCodecModel(EllaVCodecConfig(**{**codec.config.to_diff_dict(), "codebook_size": 32}))
    with_vocoder(other, TINY_VOCODER).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="another codec configuration"):
        assemble_checkpoint(tmp_path / "tts", tmp_path / "out2", codec_dir=tmp_path / "other")
    assert not (tmp_path / "out2").exists()
