"""Shared fixtures: tiny configurations (hidden 32, 2 layers) and random utterances."""

from __future__ import annotations

import random
import shutil
import socket

import pytest
import torch

from ella_v_hf import EllaVConfig, EllaVNARConfig, build_gar_sequence

TINY = dict(
    num_phonemes=10,
    codebook_size=16,
    num_codebooks=4,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
    frame_rate=50.0,
    sampling_rate=16000,
)


def tiny_config(**overrides) -> EllaVConfig:
    return EllaVConfig(**{**TINY, **overrides})


def tiny_nar_config(**overrides) -> EllaVNARConfig:
    return EllaVNARConfig(**{**TINY, **overrides})


def save_tts_with_codec(codec: torch.nn.Module, folder, **nar_overrides) -> None:
    """Save a tiny TTS checkpoint (hidden 32, one layer) embedding ``codec``, with a processor, in
    ``folder``; ``nar_overrides`` are NAR config fields (e.g. ``frame_phonemes=True``)."""
    from ella_v_hf import EllaVForTextToSpeech
    from ella_v_hf.modeling import EllaVTTSConfig
    from ella_v_hf.processing import EllaVPhonemeTokenizer, EllaVProcessor

    tok = EllaVPhonemeTokenizer()
    dims = dict(num_phonemes=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    checkpoint = EllaVForTextToSpeech(EllaVTTSConfig(gar_config=dims, nar_config={**dims, **nar_overrides}, codec_config=codec.config))
    checkpoint.codec.load_state_dict(codec.state_dict())
    checkpoint.save_pretrained(folder)
    EllaVProcessor(tok, sampling_rate=16000).save_pretrained(folder)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (for test servers and torchrun)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_utterance(rng: random.Random, config: EllaVConfig, n_phonemes: int | None = None):
    """Random phonemes, durations (some zero) and codes."""
    n = n_phonemes or rng.randint(2, 5)
    phonemes = [rng.randrange(config.num_phonemes) for _ in range(n)]
    durations = [rng.choice([0, 1, 2, 3, 4]) for _ in range(n)]
    durations[-1] = max(durations[-1], 1)
    codes = [rng.randrange(config.codebook_size) for _ in range(sum(durations))]
    return phonemes, durations, codes


def random_sequence(rng: random.Random, config: EllaVConfig, n_phonemes: int | None = None) -> list[int]:
    phonemes, durations, codes = random_utterance(rng, config, n_phonemes)
    return build_gar_sequence(phonemes, durations, codes, config.token_space, config.layout_spec).input_ids


@pytest.fixture
def cxx_compiler():
    """Skip unless a C++ compiler exists: torch.compile (inductor) builds CPU kernels with it."""
    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("torch.compile on CPU needs a C++ compiler (g++)")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def flite_corpus(tmp_path_factory):
    """A small two-voice corpus synthesised with flite (the shipped fallback sentences)."""
    from ella_v_hf.processing.demo_corpus import make_demo_corpus

    out = tmp_path_factory.mktemp("flite_corpus")
    make_demo_corpus(out, n=24, voices=["slt", "rms"], data_dir=out / "no-shared-data", progress=False)
    return out


@pytest.fixture(scope="session")
def small_codec(flite_corpus):
    """The k-means mel codec fitted small (2 x 32 codes) on the flite corpus."""
    from ella_v_hf.modeling import EllaVMelCodecConfig
    from ella_v_hf.processing import load_audio, read_corpus
    from ella_v_hf.training.fit_mel_codec import fit_mel_codec

    utterances, _ = read_corpus(flite_corpus)
    config = EllaVMelCodecConfig(num_codebooks=2, codebook_size=32, griffin_lim_iters=4)
    return fit_mel_codec((load_audio(u.audio_path) for u in utterances), config, progress=False).eval()


@pytest.fixture(scope="session")
def small_aligner(flite_corpus):
    """The built-in aligner trained briefly on the flite corpus."""
    from ella_v_hf.modeling import EllaVAlignerConfig
    from ella_v_hf.processing import EllaVPhonemeTokenizer, load_audio, prepare_waveform, read_corpus
    from ella_v_hf.processing.aligners.builtin import train_aligner

    utterances, _ = read_corpus(flite_corpus)
    tok = EllaVPhonemeTokenizer()
    examples = [
        (prepare_waveform(*load_audio(u.audio_path), 16000), ids)
        for u, ids in zip(utterances, tok.batch_encode_phonemes([u.text for u in utterances]))
    ]
    config = EllaVAlignerConfig(vocab_size=tok.vocab_size, separator_ids=tok.separator_token_ids, hidden_size=64)
    return train_aligner(examples, config, iterations=2, epochs_per_iteration=4, progress=False).eval()


@pytest.fixture(scope="session")
def prepared_corpus(tmp_path_factory, flite_corpus, small_codec, small_aligner):
    """`ella-v prepare` output for the flite corpus (small codec and aligner)."""
    from ella_v_hf.processing.prepare import prepare_corpus

    root = tmp_path_factory.mktemp("prepared")
    small_codec.save_pretrained(root / "codec_model")
    small_aligner.save_pretrained(root / "aligner_model")
    prepare_corpus(
        flite_corpus, root / "out", codec="auto", codec_model=str(root / "codec_model"), aligner_model=str(root / "aligner_model"),
        num_proc=1, progress=False,
    )
    return root / "out"


@pytest.fixture(scope="session")
def processor():
    """An EllaVProcessor at 16 kHz (the small codec's rate)."""
    from ella_v_hf.processing import EllaVPhonemeTokenizer, EllaVProcessor

    return EllaVProcessor(EllaVPhonemeTokenizer(), sampling_rate=16000)


@pytest.fixture(scope="session")
def prompt(flite_corpus):
    """(waveform, sampling rate, transcript) of one flite utterance."""
    from ella_v_hf.processing import load_audio, read_corpus

    utterance = read_corpus(flite_corpus)[0][0]
    waveform, rate = load_audio(utterance.audio_path)
    return waveform, rate, utterance.text


@pytest.fixture(scope="session")
def tts_dir(tmp_path_factory, small_aligner, small_codec):
    """A tiny EllaVForTextToSpeech (random GAR/NAR, the small codec and aligner) saved with its processor."""
    from ella_v_hf import EllaVForTextToSpeech, EllaVTTSConfig
    from ella_v_hf.processing import EllaVPhonemeTokenizer, EllaVProcessor

    tok = EllaVPhonemeTokenizer()
    dims = dict(num_phonemes=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    config = EllaVTTSConfig(gar_config=dims, nar_config=dims, codec_config=small_codec.config, aligner_config=small_aligner.config)
    torch.manual_seed(0)
    model = EllaVForTextToSpeech(config)
    model.codec.load_state_dict(small_codec.state_dict())
    model.aligner.load_state_dict(small_aligner.state_dict())
    out = tmp_path_factory.mktemp("tts")
    model.save_pretrained(out)
    EllaVProcessor(tok, sampling_rate=16000).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tts_model(tts_dir):
    from ella_v_hf import EllaVForTextToSpeech

    return EllaVForTextToSpeech.from_pretrained(tts_dir).eval()


#: The slow tier (`pytest -m "not slow"` skips it): the browser and web-server tests, compiled
#: decoding, subprocess kills, the benchmarks, fresh-process loads and the long evaluations.
SLOW_MODULES = {"test_web_demo"}
SLOW_TESTS = {
    "test_evaluate_runs_sampling_strategies_once_per_seed", "test_evaluate_produces_every_field",
    "test_evaluate_stages_score_the_first_codebook_alone", "test_pocketsphinx_transcripts_do_not_depend_on_what_was_judged_before",
    "test_synthesize_checks_its_output_and_inputs_before_working", "test_train_killed_mid_checkpoint_write_resumes_from_the_last_good_one",
    "test_config_errors_name_the_file_and_the_key", "test_prepare_killed_then_rerun_reuses_finished_chunks",
    "test_sigkilled_prepare_leaves_no_worker_processes", "test_static_cache_and_compiled_decoding_agree_with_eager",
    "test_synthesize_cli_streams", "test_half_precision_decoding_compiled_agrees_with_eager",
    "test_staged_demo_loads_in_a_fresh_process_without_the_package", "test_train_codec_cli",
    "test_bench_times_compiled_static_cache_decoding", "test_bench_runs_and_reports_every_figure",
    "test_demo_bench_measures_half_decoding_against_float32", "test_sigkill_then_resume_continues_from_the_last_good_checkpoint",
    "test_two_processes_train_like_one", "test_a_killed_two_process_run_resumes_exactly", "test_trainer_fine_tuning_runs_on_two_processes",
    "test_prepare_with_encodec_and_worker_processes", "test_a_cancelled_long_request_frees_the_model_for_the_next_one",
    "test_scaling_benchmark_runs_prepare_and_projects",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ in SLOW_MODULES or getattr(item, "originalname", item.name) in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
