"""Codecs behind one interface (``encode(input_values [B, 1, S]) -> [B, K, T]``, ``decode``): the
learned codec, the k-means mel codec and EnCodec (tiny random configs), all Auto sub-models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, EncodecConfig, EncodecModel

from ella_v_hf.evaluation.resynthesis import decode_codes, encode_waveform
from ella_v_hf.modeling import EllaVEncodecConfig, EllaVEncodecModel, EllaVMelCodecConfig, EllaVMelCodecModel
from ella_v_hf.processing import AudioError, prepare_waveform
from ella_v_hf.training.fit_mel_codec import fit_mel_codec


def test_mel_codec_shapes_and_resampling(small_codec):
    waveform = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1  # 2 s at 16 kHz
    codes = encode_waveform(small_codec, waveform, 16000)
    assert codes.shape == (2, 100) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 32
    audio = decode_codes(small_codec, codes)
    assert audio.shape == (32000,) and np.isfinite(audio).all()
    stereo_44k = np.stack([waveform, waveform], axis=1)
    stereo_44k = np.stack([prepare_waveform(stereo_44k[:, c], 16000, 44100) for c in range(2)], axis=1)
    assert encode_waveform(small_codec, stereo_44k, 44100).shape == (2, 100)  # mixed down and resampled
    assert small_codec.encode(torch.from_numpy(waveform)[None, None]).shape == (1, 2, 100)  # the model interface
    for frames in (1, 2, 3):  # shorter than one STFT window: silent padding inside, cut after
        assert decode_codes(small_codec, codes[:, :frames]).shape == (frames * 320,)


def test_mel_codec_resynthesis_keeps_the_spectral_envelope(flite_corpus, small_codec):
    from ella_v_hf.processing import load_audio, read_corpus

    utterance = read_corpus(flite_corpus)[0][0]
    waveform, rate = load_audio(utterance.audio_path)
    codes = encode_waveform(small_codec, waveform, rate)
    resynth = decode_codes(small_codec, codes)
    model = small_codec
    source_mel = model.normalized_features(torch.from_numpy(waveform)[None])
    resynth_mel = model.normalized_features(torch.from_numpy(resynth)[None])[:, : source_mel.shape[1]]
    quantised = (model.dequantize(codes[None]) - model.feature_mean) / model.feature_std
    # Griffin-Lim output re-analysed is much closer to the source than an unrelated frame order is.
    error = (resynth_mel - source_mel).pow(2).mean()
    shuffled = (source_mel[:, torch.randperm(source_mel.shape[1])] - source_mel).pow(2).mean()
    assert error < 0.5 * shuffled
    assert (quantised - source_mel).pow(2).mean() < source_mel.var()


def test_mel_codec_save_load(small_codec, tmp_path):
    small_codec.save_pretrained(tmp_path)
    waveform = np.sin(np.linspace(0, 800, 16000)).astype(np.float32)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, EllaVMelCodecModel)
    codes = encode_waveform(small_codec, waveform, 16000)
    assert torch.equal(encode_waveform(loaded, waveform, 16000), codes)
    np.testing.assert_allclose(decode_codes(loaded, codes), decode_codes(small_codec, codes))


def test_sharpening_within_bands_keeps_the_bands_and_sharpens_the_bins():
    from ella_v_hf.modeling.mel import LogMel, sharpen_within_bands

    frontend = LogMel(16000, 1024, 320, 80, 0.0, 8000.0)
    rng = np.random.default_rng(0)
    waveform = torch.from_numpy(rng.standard_normal(16000).astype(np.float32)) * torch.sin(torch.linspace(0, 300, 16000))
    log_mel = frontend(waveform[None])  # [1, T, 80]
    bank = frontend.bank(torch.device("cpu"))  # [F, M]
    magnitude = (log_mel.exp() @ torch.linalg.pinv(bank)).clamp(min=0)  # [1, T, F]

    def flatness(x: torch.Tensor) -> float:  # geometric over arithmetic mean: 1 flat, towards 0 peaky
        x = x.clamp(min=1e-8)
        return float((x.log().mean(-1).exp() / x.mean(-1)).mean())

    previous = flatness(magnitude)
    for exponent in (2.0, 3.0):
        sharpened = sharpen_within_bands(magnitude, log_mel.exp(), bank, exponent)
        assert sharpened.shape == magnitude.shape and bool((sharpened >= 0).all())
        # Each band keeps its energy (to a few per cent), the bins within it become peakier.
        band_error = (torch.log((sharpened @ bank).clamp(min=1e-5)) - log_mel).abs().mean()
        assert band_error < 0.05 * exponent
        assert flatness(sharpened) < previous - 0.01
        previous = flatness(sharpened)
    assert float((torch.log((magnitude.pow(2) @ bank).clamp(min=1e-5)) - log_mel).abs().mean()) > 1.0  # unscaled: bands lost


def test_griffin_lim_sharpening_in_the_codecs(small_codec, tmp_path):
    from ella_v_hf.modeling import EllaVCodecConfig

    waveform = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * np.linspace(0, 1, 16000, dtype=np.float32)
    codes = encode_waveform(small_codec, waveform, 16000)
    plain = decode_codes(small_codec, codes)
    small_codec.config.griffin_lim_sharpening = 2.0
    try:
        sharpened = decode_codes(small_codec, codes)
        small_codec.save_pretrained(tmp_path)
    finally:
        small_codec.config.griffin_lim_sharpening = 1.0
    assert sharpened.shape == plain.shape and np.isfinite(sharpened).all() and not np.allclose(sharpened, plain)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.griffin_lim_sharpening == 2.0
    np.testing.assert_allclose(decode_codes(loaded, codes), sharpened, atol=1e-5)
    for config in (EllaVMelCodecConfig, EllaVCodecConfig):
        assert config().griffin_lim_sharpening == 1.0  # a checkpoint without the field decodes as before
        with pytest.raises(ValueError, match="griffin_lim_sharpening must be positive"):
            config(griffin_lim_sharpening=0.0)


def test_summed_code_vectors_hard_and_expected():
    from ella_v_hf.modeling.code_vectors import summed_code_vectors

    torch.manual_seed(0)
    codebooks = [torch.randn(4, 3), torch.randn(6, 3), torch.randn(6, 3)]  # a smaller first level
    codes = torch.stack([torch.randint(0, 4, (2, 5)), torch.randint(0, 6, (2, 5)), torch.randint(0, 6, (2, 5))], dim=1)
    hard = summed_code_vectors(codebooks, codes)  # [2, 5, 3]
    torch.testing.assert_close(hard[1, 2], codebooks[0][codes[1, 0, 2]] + codebooks[1][codes[1, 1, 2]] + codebooks[2][codes[1, 2, 2]])
    certain = torch.nn.functional.one_hot(codes[:, 1:], 6).float()  # [2, 2, 5, 6]
    torch.testing.assert_close(summed_code_vectors(codebooks, codes, certain), hard)
    uniform = torch.full((2, 2, 5, 6), 1 / 6)  # unsure levels add their codebook's mean
    expected = codebooks[0][codes[:, 0]] + codebooks[1].mean(0) + codebooks[2].mean(0)
    torch.testing.assert_close(summed_code_vectors(codebooks, codes, uniform), expected)
    with pytest.raises(ValueError, match=r"probabilities must be \[B, K' - 1, T, C\]"):
        summed_code_vectors(codebooks, codes, uniform[:, :1])
    with pytest.raises(ValueError, match="probabilities cover 5 codes but codebook 1 has 6"):
        summed_code_vectors(codebooks, codes, uniform[..., :5])
    with pytest.raises(ValueError, match=r"codes of codebook 0 must lie in \[0, 4\)"):
        summed_code_vectors(codebooks, codes.clamp(min=5))
    # The first level from its (GAR) distribution: one-hot gives the codes' vectors, uniform the mean.
    one_hot = torch.nn.functional.one_hot(codes[:, 0], 4).float()  # [2, 5, 4]
    torch.testing.assert_close(summed_code_vectors(codebooks, codes, first_probabilities=one_hot), hard)
    flat = summed_code_vectors(codebooks, codes, uniform, first_probabilities=torch.full((2, 5, 4), 0.25))
    torch.testing.assert_close(flat, (codebooks[0].mean(0) + codebooks[1].mean(0) + codebooks[2].mean(0)).expand_as(hard))
    half = summed_code_vectors(codebooks, codes[:, :1], first_probabilities=torch.full((2, 5, 2), 0.5))  # fewer codes than the codebook
    torch.testing.assert_close(half, (codebooks[0][0] + codebooks[0][1]).expand(2, 5, 3) / 2)
    with pytest.raises(ValueError, match=r"first_probabilities must be \[B, T, C_1\]"):
        summed_code_vectors(codebooks, codes, first_probabilities=torch.full((2, 5, 5), 0.2))
    with pytest.raises(ValueError, match=r"first_probabilities must be \[B, T, C_1\]"):
        summed_code_vectors(codebooks, codes, first_probabilities=one_hot[:, :4])


@pytest.mark.parametrize("kind", ["learned", "mel", "encodec"])
def test_every_codec_decodes_expected_code_vectors(kind, small_codec):
    """Certain distributions (of codebooks 2..K or of the first) decode exactly like their codes; unsure
    ones change the audio."""
    from ella_v_hf.modeling import EllaVCodecConfig, EllaVCodecModel

    torch.manual_seed(0)
    if kind == "learned":
        codec = EllaVCodecModel(EllaVCodecConfig(hidden_size=16, codebook_dim=8, num_codebooks=3, codebook_size=16,
                                                 first_codebook_size=8, dilations=[1, 2], griffin_lim_iters=2)).eval()
        codec.quantizer.codebooks.normal_()
    elif kind == "mel":
        codec = small_codec
    else:
        codec = EllaVEncodecModel(EllaVEncodecConfig(**tiny_encodec().config.to_dict() | {"bandwidth": 8.0})).eval()
        for layer in codec.quantizer.layers:
            layer.codebook.embed.normal_()
    levels, size = codec.config.num_codebooks, codec.config.codebook_size
    first_size = getattr(codec.config, "first_codebook_size", None) or size
    codes = torch.cat([torch.randint(0, first_size, (1, 1, 6)), torch.randint(0, size, (1, levels - 1, 6))], dim=1)
    certain = torch.nn.functional.one_hot(codes[:, 1:], size).float()  # [1, K - 1, 6, C]
    torch.testing.assert_close(codec.decode(codes, code_probabilities=certain), codec.decode(codes))
    unsure = torch.softmax(torch.randn(1, levels - 1, 6, size), -1)
    assert not torch.allclose(codec.decode(codes, code_probabilities=unsure), codec.decode(codes))
    with pytest.raises(ValueError, match="probabilities must be"):
        codec.decode(codes, code_probabilities=certain[:, :, :3])
    # The first level likewise (first_level_decoding="expected": the GAR's distributions), alone or with the NAR's.
    first_certain = torch.nn.functional.one_hot(codes[:, 0], first_size).float()  # [1, 6, C_1]
    torch.testing.assert_close(codec.decode(codes, first_code_probabilities=first_certain), codec.decode(codes))
    torch.testing.assert_close(codec.decode(codes, certain, first_code_probabilities=first_certain), codec.decode(codes))
    first_unsure = torch.softmax(torch.randn(1, 6, first_size), -1)
    assert not torch.allclose(codec.decode(codes, first_code_probabilities=first_unsure), codec.decode(codes))


def test_fit_rejects_too_little_audio():
    with pytest.raises(ValueError, match="Only .* frames"):
        fit_mel_codec([(np.zeros(3200, dtype=np.float32), 16000)], EllaVMelCodecConfig(codebook_size=256), progress=False)


def tiny_encodec() -> EncodecModel:
    config = EncodecConfig(
        sampling_rate=8000,
        num_filters=4,
        hidden_size=8,
        upsampling_ratios=[4, 2],
        codebook_size=16,
        codebook_dim=8,
        target_bandwidths=[4.0, 8.0],
        num_lstm_layers=1,
        num_residual_layers=1,
    )
    return EncodecModel(config).eval()


def test_encodec_codec_shapes_and_save_load(tmp_path):
    from ella_v_hf.processing.prepare import load_codec

    tiny_encodec().save_pretrained(tmp_path / "hub-format")  # what facebook/encodec_24khz looks like
    codec = load_codec("encodec", str(tmp_path / "hub-format"))
    assert isinstance(codec, EllaVEncodecModel)
    assert codec.config.bandwidth == 8.0  # 6 kbps is not among this model's bandwidths: its highest
    codec = EllaVEncodecModel.from_encodec(str(tmp_path / "hub-format"), bandwidth=8.0).eval()
    config = codec.config
    assert (config.num_codebooks, config.codebook_size, config.frame_rate) == (2, 16, 1000)
    waveform = np.random.default_rng(1).standard_normal((16000, 2)).astype(np.float32) * 0.1  # 1 s stereo, 16 kHz
    codes = encode_waveform(codec, waveform, 16000)
    assert codes.shape == (2, 1000)
    audio = decode_codes(codec, codes)
    assert audio.shape == (8000,) and np.isfinite(audio).all()
    assert decode_codes(codec, codes[:1]).shape == (8000,)  # the first codebook alone decodes
    codec.save_pretrained(tmp_path / "ours")
    loaded = AutoModel.from_pretrained(tmp_path / "ours")
    assert isinstance(loaded, EllaVEncodecModel) and loaded.config.bandwidth == 8.0
    assert torch.equal(encode_waveform(loaded, waveform, 16000), codes)
    with pytest.raises(ValueError, match="bandwidth 6.0 not in"):
        EllaVEncodecConfig(**tiny_encodec().config.to_dict() | {"bandwidth": 6.0})


@pytest.mark.parametrize(
    "waveform, message",
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.array([0.0, np.nan] * 100, dtype=np.float32), "NaN"),
        (np.zeros((2, 2, 2), dtype=np.float32), "shape"),
    ],
)
def test_bad_audio(waveform, message):
    with pytest.raises(AudioError, match=message):
        prepare_waveform(waveform, 16000, 16000)


class _CountingASR:
    """Stands in for pocketsphinx: counts the waveforms it is given (and their rates)."""

    def __init__(self):
        self.rates: list[int] = []

    def transcribe(self, waveform, sampling_rate):
        assert waveform.ndim == 1 and np.isfinite(waveform).all()
        self.rates.append(sampling_rate)
        return "text"


def test_measure_codec_stage_rows(flite_corpus, small_codec, tmp_path, capsys):
    from ella_v_hf.evaluation.measure_codec import main, measure_codec
    from ella_v_hf.evaluation.resynthesis import unquantised_resynthesis, waveform_stage_ceiling
    from ella_v_hf.modeling import EllaVCodecConfig, EllaVCodecModel
    from ella_v_hf.processing import load_audio, read_corpus

    learned = EllaVCodecModel(EllaVCodecConfig(hidden_size=16, codebook_dim=8, num_codebooks=2, codebook_size=16, dilations=[1], griffin_lim_iters=2)).eval()
    learned.save_pretrained(tmp_path / "learned")
    small_codec.save_pretrained(tmp_path / "mel")
    waveform, rate = load_audio(read_corpus(flite_corpus)[0][0].audio_path)
    # The waveform stage's ceiling: the reference's own log-mel inverted, close to the source when re-analysed.
    ceiling = waveform_stage_ceiling(small_codec, waveform, rate)
    source = small_codec.normalized_features(torch.from_numpy(waveform)[None])
    again = small_codec.normalized_features(torch.from_numpy(ceiling)[None])[:, : source.shape[1]]
    shuffled = (source[:, torch.randperm(source.shape[1])] - source).pow(2).mean()
    assert (again - source).pow(2).mean() < 0.5 * shuffled
    # The unquantised autoencoder differs from every quantised decode (random codebooks quantise coarsely).
    unquantised = unquantised_resynthesis(learned, waveform, rate)
    codes = encode_waveform(learned, waveform, rate)
    assert unquantised.shape == decode_codes(learned, codes).shape and not np.allclose(unquantised, decode_codes(learned, codes))
    assert unquantised_resynthesis(small_codec, waveform, rate) is None  # k-means codec: no encoder latents

    asr = _CountingASR()
    result = measure_codec(str(tmp_path / "learned"), str(flite_corpus), n=3, levels=[1], progress=False, asr=asr, stages=True)
    assert set(result["stages"]) == {"waveform_stage", "unquantised"} and result["config"]["griffin_lim_iters"] == 2
    assert len(asr.rates) == 3 * (1 + 1 + 2)  # per utterance: the source, k = 1, two stages
    asr = _CountingASR()
    result = measure_codec(str(tmp_path / "mel"), str(flite_corpus), n=2, levels=[2], progress=False, asr=asr, stages=True,
                           griffin_lim_iters=3)
    assert set(result["stages"]) == {"waveform_stage"} and result["config"]["griffin_lim_iters"] == 3
    assert len(asr.rates) == 2 * (1 + 1 + 1)
    assert "stages" not in measure_codec(str(tmp_path / "mel"), str(flite_corpus), n=1, levels=[1], progress=False, asr=_CountingASR())
    with pytest.raises(ValueError, match="at least 1"):
        measure_codec(str(tmp_path / "mel"), str(flite_corpus), n=1, progress=False, asr=_CountingASR(), griffin_lim_iters=0)
    result = measure_codec(str(tmp_path / "mel"), str(flite_corpus), n=1, levels=[1], progress=False, asr=_CountingASR(),
                           griffin_lim_sharpening=2.0)
    assert result["config"]["griffin_lim_sharpening"] == 2.0
    with pytest.raises(ValueError, match="must be positive"):
        measure_codec(str(tmp_path / "mel"), str(flite_corpus), n=1, progress=False, asr=_CountingASR(), griffin_lim_sharpening=-1.0)
    tiny_encodec().save_pretrained(tmp_path / "encodec")
    with pytest.raises(SystemExit):  # the command line refuses Griffin-Lim iterations for EnCodec
        main(["--codec", str(tmp_path / "encodec"), "--data", str(flite_corpus), "--n", "1", "--griffin-lim-iters", "10"])
    assert "has no Griffin-Lim stage" in capsys.readouterr().err


def test_prepare_with_encodec_and_worker_processes(flite_corpus, tmp_path):
    """EnCodec's weight-normed convolutions cannot be pickled; prepare folds them (same codes) so
    its --num-proc workers can encode."""
    from torch.nn.utils import parametrize

    from ella_v_hf.processing.prepare import _without_parametrizations, prepare_corpus

    encodec = tiny_encodec()
    encodec.save_pretrained(tmp_path / "hub-format")
    codec = EllaVEncodecModel.from_encodec(str(tmp_path / "hub-format")).eval()
    waveform = torch.randn(1, 1, 24000) * 0.1
    before = codec.encode(waveform)
    assert any(parametrize.is_parametrized(m) for m in codec.modules())
    folded = _without_parametrizations(codec)
    assert not any(parametrize.is_parametrized(m) for m in folded.modules()) and torch.equal(folded.encode(waveform), before)
    summary = prepare_corpus(flite_corpus, tmp_path / "out", codec="encodec", codec_model=str(tmp_path / "hub-format"),
                             num_proc=2, progress=False)
    assert summary.utterances > 20
    assert isinstance(AutoModel.from_pretrained(tmp_path / "out" / "codec"), EllaVEncodecModel)  # saved before folding
