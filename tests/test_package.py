"""Packaging: layout, console script, parameter counts, no unsafe deserialisation anywhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ella_v_hf
import ella_v_hf.modeling
import ella_v_hf.processing
import ella_v_hf.training

ROOT = Path(__file__).resolve().parents[1]


def test_card_layout_installs_as_subpackages():
    # modeling/ processing/ training/ sit at the top level of the repo and import as ella_v_hf.*.
    assert Path(ella_v_hf.modeling.__file__).parent.name == "modeling"
    assert Path(ella_v_hf.processing.__file__).parent.name == "processing"
    assert Path(ella_v_hf.training.__file__).parent.name == "training"
    assert "import training" not in sys.modules and "modeling" not in sys.modules


def test_no_unsafe_deserialisation():
    pattern = re.compile(r"pickle\.loads?\(|torch\.load\((?![^)]*weights_only=True)|import pickle|dill\.")
    offenders = []
    for folder in ("ella_v_hf", "modeling", "processing", "training"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_console_script_params_json():
    result = subprocess.run(
        [sys.executable, "-m", "ella_v_hf.cli", "params", "--preset", "tiny", "--num-phonemes", "10", "--codebook-size", "16", "--num-codebooks", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    from ella_v_hf import EllaVConfig, EllaVForCausalLM, preset

    model = EllaVForCausalLM(EllaVConfig(num_phonemes=10, codebook_size=16, num_codebooks=4, **preset("tiny")))
    assert out["gar_parameters"] == sum(p.numel() for p in model.parameters())
    assert out["nar_parameters"] > out["nar_non_embedding_parameters"] > 0


def test_cli_reports_bad_arguments_clearly():
    result = subprocess.run(
        [sys.executable, "-m", "ella_v_hf.cli", "params", "--num-phonemes", "0"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "num_phonemes must be >= 1" in result.stderr


def test_bench_runs_and_reports_every_figure(tts_dir):
    from ella_v_hf.evaluation.bench import markdown, run_benchmark

    results = run_benchmark(phonemes=2, repeats=1, overrides=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128),
                            demo_sentences=("Hello there.", "A second sentence."), demo_model=tts_dir)
    for batch in ("1", "16"):
        row = results["batches"][batch]
        assert row["ella_v_tokens_per_second"] > 0 and row["llama_tokens_per_second"] > 0 and row["ratio_vs_llama"] > 0
        assert row["generate_floor_tokens_per_second"] > 0 and row["max_ratio_vs_llama_through_generate"] > 0
        assert row["ella_v_half_decode_tokens_per_second"] > 0 and row["ratio_half_decode_vs_llama"] > 0
        assert row["llama_float16_tokens_per_second"] > 0
    assert results["batches"]["1"]["ratio_half_decode_jump_forward_vs_llama"] > 0 and "with jump-forward" in markdown(results)
    assert "ella_v_half_decode_jump_forward_tokens_per_second" not in results["batches"]["16"]
    assert "float16 decode weights" in markdown(results)
    assert results["end_to_end"]["audio_seconds"] > 0 and results["end_to_end"]["rtf"] > 0
    assert results["training"]["ella_v_tokens_per_second"] > 0 and results["training"]["ratio_vs_llama"] > 0
    assert "ratio vs Llama" in markdown(results) and "generate() floor" in markdown(results)
    assert results["end_to_end_demo"]["rtf"] > 0 and results["end_to_end_demo"]["sentences"] == 2
    assert "rtf_float32_decoding" not in results["end_to_end_demo"]  # the test checkpoint decodes in float32
    demo = results["end_to_end_demo"]  # the ELLA-V test checkpoint: also timed with jump-forward (opt-in)
    assert demo["rtf_with_jump_forward"] > 0 and demo["speedup_of_jump_forward"] > 0
    assert "with jump-forward" in markdown(results)
    shares = results["end_to_end_demo"]["stage_shares"]
    assert all(0 < shares[k] < 1 for k in ("gar", "nar", "codec_decode")) and abs(sum(shares.values()) - 1) < 0.01
    assert 0 < demo["gar_forward_share"] < shares["gar"] and 0 < demo["rtf_outside_gar_forward"] < demo["rtf"]
    assert "everything else" in markdown(results)
    assert results["streaming"]["time_to_first_audio_seconds"] > 0 and "time to first audio" in markdown(results)


def test_demo_bench_measures_half_decoding_against_float32(tts_dir, tmp_path):
    import shutil

    from ella_v_hf.evaluation.bench import run_demo_benchmark

    half = tmp_path / "half"
    shutil.copytree(tts_dir, half)
    config = json.loads((half / "config.json").read_text())
    config["gar_config"]["decode_weight_dtype"] = "float16"
    (half / "config.json").write_text(json.dumps(config))
    demo = run_demo_benchmark(half, ("Hello there.", "A second sentence."))["end_to_end_demo"]
    assert demo["decode_weight_dtype"] == "float16" and demo["rtf_float32_decoding"] > 0
    assert demo["speedup_of_half_decoding"] > 0 and 0 <= demo["same_sequences_as_float32"] <= 2


def test_push_staging_offline(tmp_path):
    import pytest

    from ella_v_hf import EllaVForTextToSpeech, EllaVTTSConfig
    from ella_v_hf.hub import stage_for_hub
    from ella_v_hf.modeling import EllaVMelCodecConfig
    from ella_v_hf.processing import EllaVPhonemeTokenizer, EllaVProcessor

    tok = EllaVPhonemeTokenizer()
    dims = dict(num_phonemes=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    config = EllaVTTSConfig(gar_config=dims, nar_config=dims, codec_config=EllaVMelCodecConfig(num_codebooks=2, codebook_size=16))
    EllaVForTextToSpeech(config).save_pretrained(tmp_path / "model")
    EllaVProcessor(tok).save_pretrained(tmp_path / "model")
    result = subprocess.run(
        [sys.executable, "-m", "ella_v_hf.cli", "push", "--model", str(tmp_path / "model"), "--repo-id", "me/x", "--dry-run", str(tmp_path / "stage"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    files = set(json.loads(result.stdout)["files"])
    assert {"README.md", "config.json", "model.safetensors", "modeling_ella_v_tts.py", "vocab.json"} <= files
    card = (tmp_path / "stage" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-to-speech")
    assert "license: apache-2.0" in card and "\n# me/x\n" in card and 'model="me/x"' in card and "REPO_ID" not in card
    (tmp_path / "model").rename(tmp_path / "my-voice")  # without --repo-id the card is titled after the checkpoint
    stage_for_hub(tmp_path / "my-voice", tmp_path / "stage3")
    assert "\n# my-voice\n" in (tmp_path / "stage3" / "README.md").read_text()
    (tmp_path / "my-voice").rename(tmp_path / "model")
    (tmp_path / "model" / "extra.bin").write_bytes(b"\x80")
    with pytest.raises(ValueError, match="pickle-based"):
        stage_for_hub(tmp_path / "model", tmp_path / "stage2")


LAZY_IMPORT = """
import sys
import ella_v_hf
assert "torch" not in sys.modules and "transformers" not in sys.modules, "import ella_v_hf must stay cheap"
from transformers import AutoConfig, AutoModel, AutoProcessor
config = AutoConfig.for_model("ella_v_tts", gar_config={"num_phonemes": 10}, nar_config={"num_phonemes": 10})
model = AutoModel.from_config(config)
print(type(config).__name__, type(model).__name__, type(model.codec).__name__)
"""

TRANSFORMERS_FIRST = """
from transformers import AutoConfig
import ella_v_hf
print(type(AutoConfig.for_model("ella_v_codec")).__name__)
"""


def test_import_is_lazy_and_registers_when_transformers_is_used():
    for script, expected in ((LAZY_IMPORT, "EllaVTTSConfig EllaVForTextToSpeech EllaVCodecModel"), (TRANSFORMERS_FIRST, "EllaVCodecConfig")):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().splitlines()[-1] == expected


def test_prepare_names_come_from_the_registries(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ella_v_hf.cli", "prepare", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--aligner", "mfa"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Unknown aligner 'mfa'; expected one of ['builtin', 'ctc', 'textgrid']" in result.stderr
    assert not (tmp_path / "o").exists()  # refused before anything was created


def test_missing_optional_dependency_names_the_install_line():
    from ella_v_hf._optional import MissingDependencyError, require

    with pytest.raises(MissingDependencyError, match=r"pip install 'ella-v-hf\[train\]'"):
        require("surely_not_installed_package", "train", "ella-v train")


def test_bench_times_compiled_static_cache_decoding(cxx_compiler):
    from ella_v_hf.evaluation.bench import markdown, run_benchmark

    results = run_benchmark(phonemes=2, repeats=1, overrides=dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128),
                            demo_sentences=(), compile=True)
    for batch in ("1", "16"):
        row = results["batches"][batch]
        assert row["ella_v_compiled_tokens_per_second"] > 0 and row["ratio_compiled_vs_llama"] > 0
        assert row["compile_warmup_seconds"] > 0 and isinstance(row["compiled_same_tokens"], bool)
    assert "torch.compile" in markdown(results)


def test_an_installed_wheel_finds_its_bundled_models(tmp_path):
    """A plain (non-editable) install, as from PyPI: the bundled codec and demo are found inside it."""
    import os
    import shutil

    source, target = tmp_path / "source", tmp_path / "site"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    code = ("import ella_v_hf; from ella_v_hf.processing.prepare import DEFAULT_CODEC_DIR; "
            "from ella_v_hf.synthesis import DEMO_MODEL_DIR; print(ella_v_hf.__file__, DEFAULT_CODEC_DIR, DEMO_MODEL_DIR)")
    found = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(path).resolve().is_relative_to(target.resolve()) for path in found)  # the wheel's, not the checkout's
    assert (Path(found[1]) / "config.json").is_file() and (Path(found[2]) / "model.safetensors").is_file()
