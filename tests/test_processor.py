"""EllaVProcessor (text + prompt audio -> model inputs), the model's prompt encoding (codec +
aligner), and `ella-v prepare`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from ella_v_hf.modeling import LayoutSpec, TokenSpace, build_gar_sequence, parse_gar_sequence
from ella_v_hf.processing import EllaVProcessor


def test_text_only(processor):
    out = processor(["Hello there.", "A longer target sentence here."])
    assert out["input_ids"].shape[0] == 2 and out["attention_mask"].sum(1).tolist() == [
        len(processor.tokenizer("Hello there.")["input_ids"]),
        len(processor.tokenizer("A longer target sentence here.")["input_ids"]),
    ]
    assert "prompt_input_values" not in out


def test_prompt_and_target_join_as_one_utterance(processor, prompt):
    """Prompt continuation is tokenised as training tokenises one utterance: no ``. |`` at the boundary."""
    waveform, rate, text = prompt
    tok = processor.tokenizer
    out = processor(["Hello there.", "it goes on"], prompt_audio=waveform, prompt_text=[text, "No stop at the end"], sampling_rate=rate)
    for row, (prompt_text, target) in enumerate([(text, "Hello there."), ("No stop at the end", "it goes on")]):
        n, m = int(out["prompt_attention_mask"][row].sum()), int(out["attention_mask"][row].sum())
        joined = out["prompt_input_ids"][row, :n].tolist() + out["input_ids"][row, :m].tolist()
        assert joined == tok.batch_encode_phonemes([f"{prompt_text} {target}"])[0]
        separators = set(tok.separator_token_ids)
        assert not any(a in separators and b in separators for a, b in zip(joined, joined[1:]))
    assert out["input_ids"][0, 0] != tok.word_boundary_token_id  # without a prompt it starts with "|"
    assert processor(["Hello there."])["input_ids"][0, 0] == tok.word_boundary_token_id


def encoded(model, out):
    """(prompt_durations [B, Lp], prompt_codes [B, K, T], prompt_num_frames [B]) the model makes of processor outputs."""
    return model._encode_prompts(out["prompt_input_ids"], out["prompt_attention_mask"], out["prompt_input_values"], out["prompt_padding_mask"], True)


def test_prompt_inputs_feed_the_layout_rule(processor, tts_model, prompt):
    waveform, rate, text = prompt
    out = processor(["Hello there.", "Another target."], prompt_audio=waveform, prompt_text=text, sampling_rate=rate)
    n = int(out["prompt_attention_mask"][0].sum())
    all_durations, all_codes, num_frames = encoded(tts_model, out)
    durations = all_durations[0, :n].tolist()
    codes = all_codes[0]
    assert sum(durations) == int(num_frames[0]) == codes.shape[-1]
    assert codes.shape[0] == 2  # the small codec's codebooks
    # The prompt's alignment builds a valid ELLA-V continuation prompt.
    space = TokenSpace(processor.tokenizer.vocab_size, 32)
    spec = LayoutSpec("ella-v", local_advance=1)
    target = out["input_ids"][0, : int(out["attention_mask"][0].sum())].tolist()
    prompt_ids = out["prompt_input_ids"][0, :n].tolist()
    seq = build_gar_sequence(prompt_ids + target, durations, codes[0].tolist(), space, spec)
    parsed = parse_gar_sequence(seq.input_ids, space, spec)
    assert parsed.codes == codes[0].tolist() and parsed.phonemes == (prompt_ids + target)[: n + 1]


def test_prompt_conditioning_and_errors(processor, tts_model, prompt):
    waveform, rate, text = prompt
    import soxr

    base = processor("Hi.", prompt_audio=waveform, prompt_text=text, sampling_rate=rate)
    stereo = processor("Hi.", prompt_audio=np.stack([waveform, waveform], axis=1), prompt_text=text, sampling_rate=rate)
    assert torch.equal(stereo["prompt_input_values"], base["prompt_input_values"])
    assert torch.equal(encoded(tts_model, stereo)[1], encoded(tts_model, base)[1])
    resampled = processor("Hi.", prompt_audio=soxr.resample(waveform, rate, 22050), prompt_text=text, sampling_rate=22050)
    assert abs(int(encoded(tts_model, resampled)[2][0]) - int(encoded(tts_model, base)[2][0])) <= 1
    with pytest.raises(ValueError, match="silent"):
        processor("Hi.", prompt_audio=np.zeros(16000, dtype=np.float32), prompt_text=text, sampling_rate=16000)
    with pytest.raises(ValueError, match="0.10 s long"):
        processor("Hi.", prompt_audio=waveform[: rate // 10], prompt_text=text, sampling_rate=rate)
    with pytest.raises(ValueError, match="NaN"):
        processor("Hi.", prompt_audio=np.full(16000, np.nan, dtype=np.float32), prompt_text=text, sampling_rate=16000)
    with pytest.raises(ValueError, match="needs prompt_text"):
        processor("Hi.", prompt_audio=waveform, sampling_rate=rate)
    with pytest.raises(ValueError, match="needs sampling_rate"):
        processor("Hi.", prompt_audio=waveform, prompt_text=text)


def test_prompt_codes_decode(processor, tts_model, prompt):
    waveform, rate, text = prompt
    codes = encoded(tts_model, processor("Hi.", prompt_audio=waveform, prompt_text=text, sampling_rate=rate))[1][0]
    audio = tts_model._codec_decode(codes)
    assert audio.shape == (codes.shape[-1] * 320,) and torch.isfinite(audio).all()


def test_prompt_without_an_aligner_is_refused(processor, tts_dir, prompt):
    from ella_v_hf import EllaVForTextToSpeech, EllaVTTSConfig

    config = EllaVTTSConfig.from_pretrained(tts_dir)
    config.aligner_config = None
    model = EllaVForTextToSpeech(config).eval()
    waveform, rate, text = prompt
    with pytest.raises(ValueError, match="has no aligner"):
        model.generate(**processor("Hi.", prompt_audio=waveform, prompt_text=text, sampling_rate=rate))


def test_save_load_round_trip(processor, prompt, tmp_path):
    waveform, rate, text = prompt
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, EllaVProcessor) and loaded.sampling_rate == processor.sampling_rate
    a = processor("Hi there.", prompt_audio=waveform, prompt_text=text, sampling_rate=rate)
    b = loaded("Hi there.", prompt_audio=waveform, prompt_text=text, sampling_rate=rate)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_remote_code_processor_in_fresh_process(processor, prompt, tmp_path):
    waveform, rate, text = prompt
    processor.save_pretrained(tmp_path / "proc")
    np.save(tmp_path / "prompt.npy", waveform)
    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["ella_v_hf"] = None
        import numpy as np
        from transformers import AutoProcessor
        proc = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
        out = proc("Hi there.", prompt_audio=np.load(sys.argv[2]), prompt_text=sys.argv[3], sampling_rate=int(sys.argv[4]))
        print(json.dumps({"module": type(proc).__module__, **{k: v.tolist() for k, v in out.items()}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "proc"), str(tmp_path / "prompt.npy"), text, str(rate)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote.pop("module").startswith("transformers_modules.")
    local = processor("Hi there.", prompt_audio=waveform, prompt_text=text, sampling_rate=rate)
    assert remote == {k: v.tolist() for k, v in local.items()}


def test_prepare_skips_bad_entries_and_caches(flite_corpus, small_codec, small_aligner, tmp_path):
    import shutil

    from datasets import load_from_disk

    from ella_v_hf.processing.prepare import prepare_corpus

    corpus = tmp_path / "corpus"
    shutil.copytree(flite_corpus, corpus)
    (corpus / "audio" / "slt" / "slt_00000.wav").write_bytes(b"RIFF not really audio")
    shutil.copy(corpus / "audio" / "rms" / "rms_00001.wav", corpus / "audio" / "rms" / "untranscribed.wav")
    with open(corpus / "metadata.csv", "a", encoding="utf-8") as handle:
        handle.write("audio/slt/missing.wav,A missing file.,slt\n")
        handle.write("audio/rms/rms_00001.wav,Duplicate entry.,rms\n")
        handle.write("audio/rms/untranscribed.wav,,rms\n")
    small_codec.save_pretrained(tmp_path / "codec")
    small_aligner.save_pretrained(tmp_path / "aligner")
    kwargs = dict(codec="auto", codec_model=str(tmp_path / "codec"), aligner_model=str(tmp_path / "aligner"), num_proc=2, progress=False)
    summary = prepare_corpus(corpus, tmp_path / "out", **kwargs)
    reasons = {s["id"]: s["reason"] for s in summary.skipped}
    assert "Cannot read audio file" in reasons["audio/slt/slt_00000"]
    assert reasons["audio/slt/missing"].startswith("missing audio file")
    assert reasons["audio/rms/rms_00001"] == "duplicated id"
    assert reasons["audio/rms/untranscribed"] == "empty transcript"
    assert summary.utterances == 23
    data = load_from_disk(str(tmp_path / "out" / "dataset"))
    assert len(data) == 23 and {"phoneme_ids", "durations", "codes", "num_frames"} <= set(data.column_names)
    for row in data:
        assert sum(row["durations"]) == row["num_frames"] == len(row["codes"][0])
        assert len(row["durations"]) == len(row["phoneme_ids"]) and len(row["codes"]) == 2
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["utterances"] == 23 and len(saved["skipped"]) == 4
    assert isinstance(AutoProcessor.from_pretrained(tmp_path / "out" / "processor"), EllaVProcessor)
    # A re-run reuses the cached steps.
    cache_files = sorted(os.listdir(tmp_path / "out" / "cache"))
    again = prepare_corpus(corpus, tmp_path / "out", **kwargs)
    assert again.utterances == 23 and sorted(os.listdir(tmp_path / "out" / "cache")) == cache_files
    assert again.seconds["audio"] < summary.seconds["audio"] + 1.0


def test_prepare_bad_arguments(tmp_path):
    from ella_v_hf.processing.prepare import prepare_corpus

    with pytest.raises(ValueError, match="Unknown codec"):
        prepare_corpus(tmp_path, tmp_path / "o", codec="mp3")
    with pytest.raises(ValueError, match="not a supported corpus"):
        prepare_corpus(tmp_path, tmp_path / "o")


def test_mismatch_flags_use_corpus_and_speaker_thresholds():
    from datasets import Dataset

    from ella_v_hf.processing.prepare import _flag_mismatches, speaker_thresholds

    # Speaker "real" scores lower as a whole (recording conditions), speaker "tts" higher.
    real = [-0.9 + 0.01 * (i % 5) for i in range(20)]
    tts = [-0.3 + 0.01 * (i % 5) for i in range(20)]
    rows = {
        "speaker_id": ["real"] * 22 + ["tts"] * 21 + ["rare"],
        "align_score": real + [-1.3, -3.0] + tts + [-1.5] + [-1.5],
        "error": [""] * 44,
    }
    thresholds = speaker_thresholds(rows["speaker_id"], rows["align_score"])
    assert set(thresholds) == {"real", "tts"}  # "rare" has too few utterances for its own threshold
    flagged = _flag_mismatches(Dataset.from_dict(rows), corpus_threshold=-1.2)["error"]
    assert not any(flagged[:20])
    assert not flagged[20]  # below the corpus threshold, but ordinary for its speaker: kept
    assert flagged[21] and flagged[42] and flagged[43]  # outliers for the speaker (or a rare one) and the corpus
    assert "below the threshold" in flagged[21]
