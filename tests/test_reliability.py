"""Reliability: bad inputs get specific errors (or a documented recovery), killed jobs resume without
losing finished work, and generation is bounded for every layout and sampling setting.

Bad inputs covered elsewhere: empty / whitespace / emoji / control-character text and unsupported
languages (test_tokenizer), silent, 0.1 s, NaN and stereo prompts (test_processor), corrupt audio,
missing files, empty transcripts and duplicated ids in a corpus (test_processor), TextGrids that
do not match the transcript (test_alignment), missing or truncated safetensors (test_generation),
train SIGKILL mid-run (test_training), and no pickle loading anywhere (test_package).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ella_v_hf import EllaVForTextToSpeech, EllaVTTSConfig, parse_gar_sequence
from ella_v_hf.modeling import AlignmentError, EllaVMelCodecConfig
from ella_v_hf.processing import AudioError, EllaVPhonemeTokenizer, EllaVProcessor, load_audio, read_corpus

DIMS = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def tiny_tts(num_phonemes: int, **gar_overrides) -> EllaVForTextToSpeech:
    codec = EllaVMelCodecConfig(num_codebooks=2, codebook_size=16, griffin_lim_iters=1)
    config = EllaVTTSConfig(gar_config={**DIMS, "num_phonemes": num_phonemes, **gar_overrides},
                            nar_config={**DIMS, "num_phonemes": num_phonemes}, codec_config=codec)
    return EllaVForTextToSpeech(config).eval()


# -- text ----------------------------------------------------------------------------------------
def test_ten_thousand_word_text_is_split_in_seconds_and_refused_whole():
    from ella_v_hf.synthesis import MAX_SENTENCE_PHONEMES, split_sentences

    tok = EllaVPhonemeTokenizer()
    sentence = "The birch canoe slid on the smooth planks, and glue was put on the sheet"
    words = (sentence.split() * 800)[:10_000]
    for text in (" ".join(words), ". ".join(" ".join(words[i : i + 14]) for i in range(0, len(words), 14))):
        started = time.perf_counter()
        pieces = split_sentences(text, tok)
        assert time.perf_counter() - started < 30
        assert " ".join(pieces).split() == text.split()  # nothing lost or reordered
        assert max(len(ids) for ids in tok.batch_encode_phonemes(pieces)) <= MAX_SENTENCE_PHONEMES + 10
    model = tiny_tts(tok.vocab_size)
    with pytest.raises(ValueError, match=r"needs about \d+ GAR positions .* Split it into\s+sentences"):
        model.generate(**EllaVProcessor(tok)(" ".join(words[:2000])))


# -- prompt audio ----------------------------------------------------------------------------------
def test_prompt_audio_at_8_khz_and_clipped_is_usable(processor, tts_model, prompt, caplog):
    import soxr

    waveform, rate, text = prompt
    frames = []
    for audio, audio_rate in ((waveform, rate), (soxr.resample(waveform, rate, 8000), 8000)):
        inputs = processor("Hi.", prompt_audio=audio, prompt_text=text, sampling_rate=audio_rate)
        frames.append(tts_model.encode_prompt(inputs["prompt_input_values"][0, 0], inputs["prompt_input_ids"][0].tolist())[0].shape[-1])
    assert abs(frames[0] - frames[1]) <= 1  # resampled, documented
    clipped = np.clip(waveform / np.quantile(np.abs(waveform), 0.97), -1.0, 1.0)  # 3 % of samples at full scale
    with caplog.at_level("WARNING"):
        processor("Hi.", prompt_audio=clipped, prompt_text=text, sampling_rate=rate)
    assert "clipped" in caplog.text


def test_prompt_that_is_not_audio_is_refused(processor, prompt, tmp_path):
    _, rate, text = prompt
    notes = tmp_path / "notes.wav"
    notes.write_text("these are my notes, not audio")
    with pytest.raises(AudioError, match="Cannot read audio file .*notes.wav"):
        load_audio(notes)
    with pytest.raises(ValueError, match="Prompt audio is not usable audio"):
        processor("Hi.", prompt_audio=np.array(["not", "audio"]), prompt_text=text, sampling_rate=rate)
    with pytest.raises(ValueError, match="not usable audio|invalid sampling rate"):
        processor("Hi.", prompt_audio=np.ones(16000, dtype=np.float32), prompt_text=text, sampling_rate=0)


def test_prompt_text_that_does_not_match_the_audio_is_refused(processor, tts_model, prompt, flite_corpus):
    # The tiny test aligner only catches gross mismatches (other sentences read over this prompt);
    # the corpus-size one flags swapped transcripts too (see the processing notes).
    waveform, rate, _ = prompt
    wrong = " ".join(u.text for u in read_corpus(flite_corpus)[0][1:5])
    with pytest.raises(AlignmentError, match="does not match the audio"):
        tts_model.generate(**processor("Hi.", prompt_audio=waveform, prompt_text=wrong, sampling_rate=rate))


def test_truncated_flac_is_refused_with_the_decoder_error(flite_corpus, tmp_path):
    import soundfile as sf

    waveform, rate = load_audio(read_corpus(flite_corpus)[0][0].audio_path)
    sf.write(tmp_path / "whole.flac", waveform, rate)
    data = (tmp_path / "whole.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])  # a download that stopped half-way
    assert len(load_audio(tmp_path / "whole.flac")[0]) == len(waveform)
    with pytest.raises(AudioError, match=r"Cannot read audio file .*cut.flac.*flac decoder"):
        load_audio(tmp_path / "cut.flac")


# -- configs and checkpoints ----------------------------------------------------------------------
def test_inconsistent_vocab_sizes_are_refused(tmp_path):
    from ella_v_hf.synthesis import load_checkpoint

    with pytest.raises(ValueError, match=r"gar_config.num_phonemes \(65\) != nar_config.num_phonemes \(70\)"):
        EllaVTTSConfig(gar_config={**DIMS, "num_phonemes": 65}, nar_config={**DIMS, "num_phonemes": 70})
    tok = EllaVPhonemeTokenizer()
    tiny_tts(tok.vocab_size + 3).save_pretrained(tmp_path)
    EllaVProcessor(tok).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"tokenizer has {tok.vocab_size} phoneme symbols but the model was built for num_phonemes={tok.vocab_size + 3}"):
        load_checkpoint(tmp_path)


# -- interrupted jobs -----------------------------------------------------------------------------
PREPARE_THEN_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from ella_v_hf.processing import prepare
    data, out, codec, aligner, log, kill_at = sys.argv[1:7]
    prepare.AUDIO_CHUNK_ROWS = 4
    real = prepare.load_audio
    def counted(path):
        with open(log, "a") as handle:
            handle.write(str(path) + "\\n")
        if int(kill_at) and sum(1 for _ in open(log)) >= int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path)
    prepare.load_audio = counted
    prepare.prepare_corpus(data, out, codec="auto", codec_model=codec, aligner_model=aligner, num_proc=1, progress=False)
    """
)


def test_prepare_killed_then_rerun_reuses_finished_chunks(flite_corpus, prepared_corpus, small_codec, small_aligner, tmp_path):
    from datasets import load_from_disk

    small_codec.save_pretrained(str(tmp_path / "codec"))
    small_aligner.save_pretrained(tmp_path / "aligner")
    out = tmp_path / "out"

    def run(log: str, kill_at: int) -> subprocess.CompletedProcess:
        args = [str(flite_corpus), str(out), str(tmp_path / "codec"), str(tmp_path / "aligner"), str(tmp_path / log), str(kill_at)]
        return subprocess.run([sys.executable, "-c", PREPARE_THEN_DIE, *args], capture_output=True, text=True, timeout=300)

    # The screening step reads all 24 files first (6 chunks of 4 rows), then the audio step: the
    # 34th read is the 2nd row of the audio step's 3rd chunk.
    killed = run("first.log", kill_at=24 + 10)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "dataset").exists() and not (out / "summary.json").exists()  # nothing half-written
    assert len(list((out / "cache").glob("screen-*.arrow"))) == 6
    finished = sorted(p.name for p in (out / "cache").glob("audio-*.arrow"))
    assert len(finished) == 2  # rows 0-3 and 4-7
    rerun = run("second.log", kill_at=0)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    redone = (tmp_path / "second.log").read_text().splitlines()
    assert len(redone) == 24 - 8  # the finished chunks (screening and audio) were reused, not recomputed
    assert not list((out / "cache").glob("tmp*"))  # the killed run's temporary file was removed
    got, want = load_from_disk(str(out / "dataset")), load_from_disk(str(prepared_corpus / "dataset"))
    assert got["id"] == want["id"] and got["codes"] == want["codes"] and got["durations"] == want["durations"]


TRAIN_THEN_DIE_IN_CHECKPOINT = textwrap.dedent(
    """
    import os, signal, sys
    real = os.replace
    def replace(source, target, *args, **kwargs):
        if os.path.basename(str(source)) == ".tmp-step-8":  # step 8's checkpoint is written, not yet committed
            os.kill(os.getpid(), signal.SIGKILL)
        return real(source, target, *args, **kwargs)
    os.replace = replace
    from ella_v_hf.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_train_killed_mid_checkpoint_write_resumes_from_the_last_good_one(prepared_corpus, tmp_path):
    config = tmp_path / "c.json"
    small = dict(DIMS, num_hidden_layers=2)
    config.write_text(json.dumps({"preset": "tiny", "model_overrides": small, "max_steps": 12, "warmup_steps": 2,
                                  "max_tokens_per_batch": 2500, "save_every": 4, "eval_every": 1000, "log_every": 1}))
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--data", str(prepared_corpus), "--out", str(run)]
    killed = subprocess.run([sys.executable, "-c", TRAIN_THEN_DIE_IN_CHECKPOINT, *args], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [".tmp-step-8", "step-4"]
    assert (run / "model" / "trained_steps.txt").read_text() == "4"  # the usable model is the last good one
    resumed = subprocess.run([sys.executable, "-m", "ella_v_hf.cli", *args, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "step-4 at step 4" in resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == 12
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-12", "step-8"]
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps[-8:] == list(range(5, 13))  # steps 5-8 were redone after the kill, nothing skipped


# -- bounded generation -----------------------------------------------------------------------------
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    layout=st.sampled_from([dict(layout="ella-v"), dict(layout="ella-v", global_advance=False), dict(layout="ella-v", local_advance=0),
                            dict(layout="ella-v", local_advance=2), dict(layout="vall-e")]),
    cap=st.integers(1, 6),
    rows=st.lists(st.lists(st.integers(0, 11), min_size=1, max_size=8), min_size=1, max_size=3),
    sampling=st.sampled_from([dict(do_sample=False), dict(do_sample=True, top_p=0.9), dict(do_sample=True, temperature=2.0, top_k=0)]),
)
def test_generation_is_bounded_for_every_layout_and_sampling(seed, layout, cap, rows, sampling):
    torch.manual_seed(seed)
    model = tiny_tts(12, max_frames_per_phone=cap, **layout)
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    out = model.generate(input_ids=ids, attention_mask=mask, **sampling)
    gar = model.config.gar_config
    for b, row in enumerate(rows):
        sequence = [t for t in out.sequences[b].tolist() if t != gar.token_space.PAD]
        parsed = parse_gar_sequence(sequence, gar.token_space, gar.layout_spec, strict=False)
        prefix = len(row) + 1 if gar.global_advance or not gar.layout_spec.interleaved else 1
        if gar.layout_spec.interleaved:
            assert parsed.complete and not out.infinite[b] and parsed.phonemes == row
            assert max(parsed.frame_counts) <= cap
            assert len(sequence) - prefix <= len(row) * (cap + 2) + 2
        else:  # VALL-E: EOS, or the length cap at worst (then counted as infinite)
            assert len(parsed.codes) <= width * model.config.vall_e_max_frames_per_phone + 1  # + the slot left for EOS
            assert parsed.complete != bool(out.infinite[b])


# -- nothing a user owns is deleted; one writer per output directory --------------------------------
LOCK_HOLDER = """
import sys, time
from ella_v_hf._lock import run_lock
with run_lock(sys.argv[1], "test holder"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_free(prepared_corpus, flite_corpus, tmp_path):
    from ella_v_hf._lock import RunLockedError
    from ella_v_hf.processing.prepare import prepare_corpus
    from ella_v_hf.training.train_codec import CodecTrainConfig, train_codec
    from ella_v_hf.training.trainer import TrainConfig, train

    out = tmp_path / "shared-out"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        gar = TrainConfig(model_overrides=DIMS, max_steps=1, save_every=1, max_tokens_per_batch=2500)
        with pytest.raises(RunLockedError, match=rf"in use by another test holder \(process {holder.pid}\)"):
            train(gar, prepared_corpus, out, progress=False)
        with pytest.raises(RunLockedError):
            train_codec(CodecTrainConfig(max_steps=1), flite_corpus, out, progress=False)
        with pytest.raises(RunLockedError):
            prepare_corpus(flite_corpus, out, codec="mel", progress=False)
        assert not (out / "checkpoints").exists() and not (out / "dataset").exists()  # nothing was written
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock with the process
        holder.wait()
    summary = train(TrainConfig(model_overrides=DIMS, max_steps=1, save_every=1, max_tokens_per_batch=2500), prepared_corpus, out, progress=False)
    assert summary["step"] == 1


def test_resume_keeps_one_log_record_per_step(prepared_corpus, tmp_path):
    from ella_v_hf.training.trainer import TrainConfig, train

    config = TrainConfig(model_overrides=DIMS, max_steps=4, save_every=2, log_every=1, eval_every=100, max_tokens_per_batch=2500)
    train(config, prepared_corpus, tmp_path / "run", progress=False, stop_after=3)  # logs step 3, saved at 2
    train(config, prepared_corpus, tmp_path / "run", resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if "loss" in line or "gar" in line]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4]


# -- wrong weights never load silently ----------------------------------------------------------------
def test_weights_of_another_model_or_no_model_are_refused(tmp_path):
    import shutil

    from safetensors.torch import save_file

    from ella_v_hf.modeling.loading import WeightsMismatchError
    from ella_v_hf.synthesis import DEMO_MODEL_DIR, load_checkpoint

    empty, foreign = tmp_path / "empty", tmp_path / "foreign"
    for folder in (empty, foreign):
        shutil.copytree(DEMO_MODEL_DIR, folder)
    save_file({"unrelated.weight": torch.zeros(3)}, str(empty / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(DEMO_MODEL_DIR.parent / "vall-e-demo" / "model.safetensors", foreign / "model.safetensors")  # no frame-phoneme NAR
    with pytest.raises(WeightsMismatchError, match=r"missing keys .*unexpected keys \['unrelated.weight'\]"):
        load_checkpoint(empty)
    with pytest.raises(WeightsMismatchError, match=r"missing keys \['nar.frame_phoneme_embeddings.weight'\]"):
        load_checkpoint(foreign)
    result = subprocess.run([sys.executable, "-m", "ella_v_hf.cli", "synthesize", "Hi.", "-o", str(tmp_path / "x.wav"), "--model", str(empty)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "do not fit EllaVForTextToSpeech" in result.stderr and not (tmp_path / "x.wav").exists()


def test_a_vocabulary_in_another_order_is_refused(tmp_path):
    import shutil

    from ella_v_hf.synthesis import DEMO_MODEL_DIR, load_checkpoint

    shutil.copytree(DEMO_MODEL_DIR, tmp_path / "model")
    vocab = json.loads((tmp_path / "model" / "vocab.json").read_text(encoding="utf-8"))
    a, b = list(vocab)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # same size, two symbols swapped
    (tmp_path / "model" / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="not the one the model was trained with"):
        load_checkpoint(tmp_path / "model")


# -- the synthesis command line -------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ella_v_hf.cli", *args], capture_output=True, text=True, timeout=300)


def test_synthesize_checks_its_output_and_inputs_before_working(tmp_path):
    cases = [
        (["Hi.", "-o", str(tmp_path)], "is a directory"),
        (["Hi.", "-o", str(tmp_path / "speech")], "ending in one of .wav"),
        (["Hi.", "-o", str(tmp_path / "missing" / "x.wav")], "does not exist"),
        (["Hi.", "-o", str(tmp_path / "x.wav"), "--prompt-audio", str(tmp_path / "nope.wav"), "--prompt-text", "Hi."], "nope.wav does not exist"),
        (["Hi.", "-o", str(tmp_path / "x.wav"), "--max-frames-per-phone", "0"], "max_frames_per_phone must be a positive integer"),
    ]
    (tmp_path / "empty.txt").write_text("\n  \n")
    cases.append((["-o", str(tmp_path / "x.wav"), "--batch-file", str(tmp_path / "empty.txt")], "has no text lines"))
    for args, message in cases:
        result = run_cli("synthesize", *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr[-1000:])
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "x.wav").exists()


def test_a_bad_batch_line_is_reported_and_the_rest_synthesised(tmp_path):
    (tmp_path / "lines.txt").write_text("\ufeffFirst line.\n🙂🙂\nThird line.\n", encoding="utf-8")
    result = run_cli("synthesize", "-o", str(tmp_path / "out.wav"), "--batch-file", str(tmp_path / "lines.txt"), "--json")
    assert result.returncode == 2 and "line 2:" in result.stderr and "1 of 3 lines failed" in result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [f["line"] for f in report["failures"]] == [2] and len(report["results"]) == 2
    assert (tmp_path / "out_0000.wav").is_file() and (tmp_path / "out_0002.wav").is_file() and not (tmp_path / "out_0001.wav").exists()


def test_generate_refuses_a_zero_frame_cap():
    tok = EllaVPhonemeTokenizer()
    with pytest.raises(ValueError, match="max_frames_per_phone must be a positive integer, got 0"):
        tiny_tts(tok.vocab_size).generate(**EllaVProcessor(tok)("Hi."), max_frames_per_phone=0)


# -- prepare: fit only on what it keeps; no orphans --------------------------------------------------
def test_prepare_fits_only_on_files_it_keeps(flite_corpus, tmp_path):
    import soundfile as sf

    from ella_v_hf.processing.prepare import _fitting_sample

    utterances = read_corpus(flite_corpus)[0]
    long_file = tmp_path / "long.wav"
    sf.write(long_file, np.zeros(16000 * 30, dtype=np.float32), 16000)  # 30 s: over max_seconds
    paths = [u.audio_path for u in utterances] + [str(long_file), str(tmp_path / "missing.wav")]
    sample = _fitting_sample(paths, list(range(len(paths))), n=len(paths), min_seconds=0.5, max_seconds=20.0, seed=0)
    assert sample == list(range(len(utterances)))


PREPARE_WORKERS_THEN_WAIT = """
import os, sys, time
from ella_v_hf.processing import prepare
data, out, codec, aligner, pids = sys.argv[1:6]
real = prepare.load_audio
def slow(path):
    open(os.path.join(pids, str(os.getpid())), "w").close()
    time.sleep(1.0)
    return real(path)
prepare.load_audio = slow
prepare.prepare_corpus(data, out, codec="auto", codec_model=codec, aligner_model=aligner, num_proc=2, progress=False)
"""


def test_sigkilled_prepare_leaves_no_worker_processes(flite_corpus, small_codec, small_aligner, tmp_path):
    import signal
    import time

    small_codec.save_pretrained(tmp_path / "codec")
    small_aligner.save_pretrained(tmp_path / "aligner")
    (tmp_path / "pids").mkdir()
    args = [str(flite_corpus), str(tmp_path / "out"), str(tmp_path / "codec"), str(tmp_path / "aligner"), str(tmp_path / "pids")]
    process = subprocess.Popen([sys.executable, "-c", PREPARE_WORKERS_THEN_WAIT, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((tmp_path / "pids").iterdir())) < 2:
        time.sleep(0.2)
    workers = [int(p.name) for p in (tmp_path / "pids").iterdir()]
    assert len(workers) >= 2 and process.pid not in workers
    import psutil  # an accelerate dependency

    forked = {child.pid for child in psutil.Process(process.pid).children()}  # the workers and datasets' manager process
    assert set(workers) <= forked and len(forked) > len(workers)
    workers = sorted(forked)
    process.send_signal(signal.SIGKILL)
    process.wait()

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, IndexError):
            return False

    deadline = time.time() + 10
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)


def test_metadata_with_a_bom_an_empty_file_name_or_latin_1(flite_corpus, tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(flite_corpus, corpus)
    text = (corpus / "metadata.csv").read_text(encoding="utf-8")
    (corpus / "metadata.csv").write_text("\ufeff" + text + ",An orphan sentence.,slt\n", encoding="utf-8")
    utterances, problems = read_corpus(corpus)
    assert len(utterances) == 24 and [(p.id, p.reason) for p in problems] == [("metadata.csv line 26", "empty file_name")]
    (corpus / "metadata.csv").write_bytes(text.replace("The", "Thé").encode("latin-1"))
    with pytest.raises(ValueError, match=r"metadata.csv is not UTF-8 text .*save it as UTF-8"):
        read_corpus(corpus)


def test_config_errors_name_the_file_and_the_key(tmp_path):
    import shutil

    from ella_v_hf.synthesis import DEMO_MODEL_DIR
    from ella_v_hf.training.trainer import TrainConfig

    (tmp_path / "r.json").write_text('{"max_steps": "ten"}')
    with pytest.raises(ValueError, match=r"r.json: max_steps must be an integer, got 'ten'"):
        TrainConfig.from_file(tmp_path / "r.json")
    (tmp_path / "r.json").write_text('{"max_steps": 10,}')
    with pytest.raises(ValueError, match=r"r.json is not valid JSON"):
        TrainConfig.from_file(tmp_path / "r.json")
    (tmp_path / "ok.json").write_text('{"learning_rate": 1, "local_advance": 2}')  # an int for a float is fine
    assert TrainConfig.from_file(tmp_path / "ok.json").learning_rate == 1
    for name, edit, message in (("broken", lambda text: text[:-20], "config.json is not valid JSON"),
                                ("nogar", lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "gar_config"}), "it has no gar_config")):
        shutil.copytree(DEMO_MODEL_DIR, tmp_path / name)
        config = tmp_path / name / "config.json"
        config.write_text(edit(config.read_text()))
        result = run_cli("synthesize", "Hi.", "-o", str(tmp_path / "x.wav"), "--model", str(tmp_path / name))
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]


def test_a_too_long_prompt_is_blamed_not_the_text(processor, tts_model, prompt):
    waveform, rate, text = prompt
    repeats = int(np.ceil(60 * rate / len(waveform)))  # about a minute of prompt
    inputs = processor("Hi.", prompt_audio=np.tile(waveform, repeats), prompt_text=" ".join([text] * repeats), sampling_rate=rate)
    with pytest.raises(ValueError, match=r"The prompt audio \(\d+\.\d s\) alone takes .* use a prompt of 3-10 s"):
        tts_model.generate(**inputs, check_alignment=False)


def test_a_clipped_prompt_that_fails_alignment_says_it_is_clipped(processor, tts_model, prompt, flite_corpus):
    waveform, rate, _ = prompt
    wrong = " ".join(u.text for u in read_corpus(flite_corpus)[0][1:5])
    clipped = np.clip(waveform * 50, -1.0, 1.0)
    with pytest.raises(AlignmentError, match=r"heavily clipped \(\d+\.\d % of samples at full scale\)"):
        tts_model.generate(**processor("Hi.", prompt_audio=clipped, prompt_text=wrong, sampling_rate=rate))


def test_a_full_disk_is_named_in_one_line(prepared_corpus, flite_corpus, tmp_path, monkeypatch, capsys):
    import errno

    import safetensors.torch
    from accelerate import Accelerator

    from ella_v_hf import cli
    from ella_v_hf.training import trainer  # noqa: F401

    def torch_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4416 vs 4304")

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"model_overrides": DIMS, "max_steps": 2, "save_every": 1, "max_tokens_per_batch": 2500}))
    monkeypatch.setattr(Accelerator, "save_state", torch_full)
    assert cli.main(["train", "--config", str(recipe), "--data", str(prepared_corpus), "--out", str(tmp_path / "run")]) == 2
    assert "most likely because the disk is full" in capsys.readouterr().err

    def safetensors_full(*args, **kwargs):
        raise safetensors.SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')

    monkeypatch.setattr(safetensors.torch, "save_file", safetensors_full)
    monkeypatch.setattr("ella_v_hf.processing.prepare._atomic_dir", _raising_dir(OSError(errno.ENOSPC, "No space left on device")))
    assert cli.main(["prepare", "--data", str(flite_corpus), "--out", str(tmp_path / "prep"), "--codec", "mel", "--num-proc", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ella-v prepare: error: writing failed, most likely because the disk is full")


def _raising_dir(error: Exception):
    from contextlib import contextmanager

    @contextmanager
    def atomic_dir(target):
        raise error
        yield target

    return atomic_dir


def test_no_audio_is_an_error_not_an_empty_file(tmp_path, monkeypatch, capsys):
    from ella_v_hf import cli, synthesis

    def silent(model, processor, text, **kwargs):
        return synthesis.SynthesisResult(np.zeros(0, dtype=np.float32), 16000, [text], 0, 0, [])

    monkeypatch.setattr(synthesis, "synthesize", silent)
    assert cli.main(["synthesize", "Hello.", "-o", str(tmp_path / "x.wav")]) == 2
    assert "generated no audio" in capsys.readouterr().err and not (tmp_path / "x.wav").exists()
