"""Quality measures: DNSMOS, PESQ, STOI and log-mel distance (evaluation/quality.py), and their rows in
``measure_codec --quality`` and ``ella-v evaluate``."""

from __future__ import annotations

import numpy as np
import pytest

from ella_v_hf.evaluation.quality import DNSMOS, load_dnsmos, log_mel_distance, mean_scores, reference_scores
from ella_v_hf.processing import load_audio, read_corpus


@pytest.fixture(scope="module")
def speech(flite_corpus):
    return load_audio(read_corpus(flite_corpus)[0][0].audio_path)  # (waveform [S], rate)


def test_reference_scores_rank_degradations(speech):
    waveform, rate = speech
    rng = np.random.default_rng(0)
    same = reference_scores(waveform, rate, waveform, rate)
    assert same["pesq"] > 4.4 and same["stoi"] == pytest.approx(1.0, abs=1e-6) and same["mel_distance"] == 0.0
    scale = np.abs(waveform).max()
    light = reference_scores(waveform, rate, waveform + 0.01 * scale * rng.standard_normal(len(waveform)), rate)
    heavy = reference_scores(waveform, rate, waveform + 0.3 * scale * rng.standard_normal(len(waveform)), rate)
    assert same["pesq"] > light["pesq"] > heavy["pesq"]
    assert same["stoi"] > light["stoi"] > heavy["stoi"]
    assert 0 < light["mel_distance"] < heavy["mel_distance"]
    # A longer estimate is trimmed to the reference; a resampled copy still matches closely.
    assert reference_scores(waveform, rate, np.concatenate([waveform, waveform]), rate)["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert log_mel_distance(waveform, rate, waveform, rate) == 0.0
    with pytest.raises(ValueError, match="0.25 s"):
        reference_scores(waveform[:100], rate, waveform, rate)


def test_dnsmos_prefers_speech_to_noise(speech):
    waveform, rate = speech
    judge = DNSMOS(threads=1)
    clean = judge(waveform, rate)
    noise = judge(np.random.default_rng(0).uniform(-0.5, 0.5, len(waveform)).astype(np.float32), rate)
    assert set(clean) == {"p808", "sig", "bak", "ovrl"} and all(1.0 <= v <= 5.0 for v in clean.values())
    assert clean["p808"] > noise["p808"] + 0.5 and clean["bak"] > noise["bak"] + 0.5
    with pytest.raises(ValueError, match="empty"):
        judge(np.zeros(0, np.float32), rate)
    assert load_dnsmos("no") is None
    with pytest.raises(ValueError, match="auto, yes or no"):
        load_dnsmos("maybe")


def test_mean_scores_skip_nan():
    assert mean_scores([{"pesq": 1.0, "stoi": 0.5}, {"pesq": float("nan"), "stoi": 0.7}]) == {"pesq": 1.0, "stoi": 0.6}
    assert mean_scores([]) == {}


def test_measure_codec_and_evaluate_report_quality(flite_corpus, small_codec, tts_dir, tmp_path):
    from ella_v_hf.evaluation.evaluate_tts import evaluate_model
    from ella_v_hf.evaluation.measure_codec import measure_codec

    class SilentASR:
        def transcribe(self, waveform, rate):
            return ""

    small_codec.save_pretrained(tmp_path / "mel")
    result = measure_codec(str(tmp_path / "mel"), str(flite_corpus), n=2, levels=[1, 2], progress=False, asr=SilentASR(),
                           stages=True, quality=True)
    quality = result["quality"]
    assert set(quality) == {"ground_truth", "first_1", "first_2", "waveform_stage"}
    assert set(quality["ground_truth"]) == {"dnsmos_p808", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}  # no reference to compare
    assert set(quality["first_2"]) == {"dnsmos_p808", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "pesq", "stoi", "mel_distance"}
    # More codebooks reconstruct the log-mel more closely.
    assert quality["first_2"]["mel_distance"] < quality["first_1"]["mel_distance"]
    assert "quality" not in measure_codec(str(tmp_path / "mel"), str(flite_corpus), n=1, levels=[1], progress=False, asr=SilentASR())

    result = evaluate_model(str(tts_dir), str(flite_corpus), str(tmp_path / "e.json"), mode="none", sim="none",
                            sweep=["greedy"], limit=2, progress=False, dnsmos="yes")
    assert result["dnsmos"] is True
    for name in ("ground_truth", "codec_resynthesis", "greedy"):
        assert 1.0 <= result["summary"][name]["dnsmos_p808"] <= 5.0
    assert "DNSMOS P.808" in (tmp_path / "e.md").read_text()
    off = evaluate_model(str(tts_dir), str(flite_corpus), str(tmp_path / "off.json"), mode="none", sim="none",
                         sweep=["greedy"], limit=1, progress=False, dnsmos="no")
    assert off["dnsmos"] is False and off["summary"]["greedy"]["dnsmos_p808"] is None


def test_codec_ablation_table(tmp_path, capsys):
    import json

    from ella_v_hf.evaluation.codec_ablation_table import main

    def measurement(truth, k1, k8, unquantised=None, quality=None):
        m = {"utterances": 3, "ground_truth": {"wer": truth, "cer": 0.1},
             "first_codebooks": {"1": {"wer": k1, "cer": 0.2}, "8": {"wer": k8, "cer": 0.1}}}
        if unquantised is not None:
            m["stages"] = {"unquantised": {"wer": unquantised, "cer": 0.1}}
        if quality is not None:
            m["quality"] = {"first_8": quality}
        return m

    for name, m in {"plain": measurement(0.2, 0.5, 0.24, 0.22, {"dnsmos_p808": 3.1, "pesq": 1.5, "stoi": 0.8}),
                    "flite": measurement(0.2, 0.6, 0.3)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "measure.json").write_text(json.dumps(m))
    (tmp_path / "plain" / "first_level.json").write_text(json.dumps({"entropy_given_phoneme": 3.5, "phoneme_purity": 0.26}))
    (tmp_path / "bundled").mkdir()  # the first level measured, resynthesis not yet
    (tmp_path / "bundled" / "first_level.json").write_text(json.dumps({"entropy_given_phoneme": 1.25, "phoneme_purity": 0.94}))
    assert main([str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].endswith("| H(first level given phoneme) | phoneme purity |")
    assert len({line.count("|") for line in table}) == 1  # every row has the header's cells
    assert table[2] == "| bundled | – | – | – | – | – | – | – | – | – | 1.25 nats | 0.94 |"
    assert table[3] == "| flite | 3 | 20.0 % | 60.0 % | 30.0 % | – | 1.50 × | – | – | – | – | – |"
    assert table[4] == "| plain | 3 | 20.0 % | 50.0 % | 24.0 % | 22.0 % | 1.20 × | 3.10 | 1.50 | 0.80 | 3.50 nats | 0.26 |"
    with pytest.raises(SystemExit):
        main([str(tmp_path / "plain")])  # no run folders below it


def test_waveform_stage_table(tmp_path, capsys):
    import json

    from ella_v_hf.evaluation.waveform_stage_table import main

    codec = {"first_codebooks": {"8": {"wer": 0.4}}, "stages": {"waveform_stage": {"wer": 0.3}},
             "quality": {"first_8": {"dnsmos_p808": 2.9, "dnsmos_sig": 2.5, "dnsmos_bak": 3.2, "dnsmos_ovrl": 2.0, "pesq": 1.4, "stoi": 0.81},
                         "waveform_stage": {"dnsmos_p808": 3.3}}}
    demo = {"summary": {"greedy": {"wer": 0.376, "dnsmos_p808": 2.82}, "top_p=0.9": {"wer": 0.327, "dnsmos_p808": 2.81}}}
    (tmp_path / "codec.json").write_text(json.dumps(codec))
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    (tmp_path / "empty.json").write_text("{}")
    assert main([f"vocos={tmp_path}/codec.json,{tmp_path}/demo.json", f"none={tmp_path}/empty.json,{tmp_path}/empty.json"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| waveform stage | codec k=8 WER |") and len({line.count("|") for line in table}) == 1
    assert table[2] == "| vocos | 40.0 % | 2.90 | 2.50 / 3.20 / 2.00 | 1.40 | 0.810 | 30.0 % | 3.30 | 37.6 % | 2.82 | 32.7 % | 2.81 |"
    assert table[3] == "| none | – | – | – / – / – | – | – | – | – | – | – | – | – |"
    for bad in (f"x={tmp_path}/codec.json", f"x={tmp_path}/missing.json,{tmp_path}/demo.json"):
        with pytest.raises(SystemExit):
            main([bad])
