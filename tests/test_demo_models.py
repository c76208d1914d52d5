"""The bundled demo checkpoints: complete, fp16 on disk, small, with the NARs their cards describe,
and the default of `ella-v synthesize`, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from safetensors import safe_open

import ella_v_hf
from ella_v_hf.hub import check_checkpoint

DEMOS = Path(ella_v_hf.__file__).parent / "demo_models"
NAMES = {"ella-v-demo": "ella-v", "vall-e-demo": "vall-e"}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_demo_is_complete_and_stored_in_fp16(name):
    folder = check_checkpoint(DEMOS / name)
    config = json.loads((folder / "config.json").read_text())
    assert config["gar_config"]["layout"] == NAMES[name] and config["dtype"] == "float32"
    for path in folder.rglob("*.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            assert {handle.get_tensor(k).dtype for k in handle.keys()} <= {torch.float16, torch.int64}, path
    assert (folder / "README.md").read_text().startswith("---")  # the model card travels with it


def test_demos_fit_in_60_mb_and_have_the_nars_their_cards_describe():
    """ELLA-V's NAR reads each frame's aligned phoneme (frame_phonemes), which VALL-E cannot give it;
    otherwise the two NARs are the same recipe: same parameter names and shapes except that embedding."""
    total = sum(p.stat().st_size for name in NAMES for p in (DEMOS / name).rglob("*") if p.is_file())
    assert total <= 60_000_000, total  # the size budget for both demos (60 MB)
    shapes = {}
    for name in NAMES:
        with safe_open(str(DEMOS / name / "model.safetensors"), framework="pt") as handle:
            shapes[name] = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys() if k.startswith("nar.")}
        nar_config = json.loads((DEMOS / name / "config.json").read_text())["nar_config"]
        assert nar_config.get("frame_phonemes", False) == (name == "ella-v-demo")
    extra = set(shapes["ella-v-demo"]) - set(shapes["vall-e-demo"])
    assert extra == {"nar.frame_phoneme_embeddings.weight"} and set(shapes["vall-e-demo"]) <= set(shapes["ella-v-demo"])
    assert all(shapes["ella-v-demo"][k] == v for k, v in shapes["vall-e-demo"].items())


def test_demos_embed_the_bundled_codec():
    """`ella-v prepare`'s default codec is the demos' own, so data prepared with it fine-tunes them."""
    from ella_v_hf.processing.prepare import DEFAULT_CODEC_DIR

    with safe_open(str(Path(DEFAULT_CODEC_DIR) / "model.safetensors"), framework="pt") as handle:
        codec = {key: handle.get_tensor(key) for key in handle.keys()}
    for name in NAMES:
        with safe_open(str(DEMOS / name / "model.safetensors"), framework="pt") as handle:
            embedded = {key[len("codec."):]: handle.get_tensor(key) for key in handle.keys() if key.startswith("codec.")}
        assert embedded.keys() == codec.keys(), name
        assert all(torch.equal(embedded[key], codec[key]) for key in codec), name


def test_synthesize_uses_the_ella_v_demo_by_default(tmp_path):
    out = tmp_path / "hello.wav"
    result = subprocess.run([sys.executable, "-m", "ella_v_hf.cli", "synthesize", "Hello world, this is a test.", "-o", str(out), "--seed", "0", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    audio, rate = sf.read(out)
    assert rate == 16000 and 0.5 < report["seconds"] < 10
    assert report["seconds"] == pytest.approx(len(audio) / rate, abs=1e-3)
    assert report["infinite"] == 0 and abs(audio).max() > 0.01


def test_demos_hold_no_code():
    """Bundled demos are config, weights, generation config and processor files: they load through
    the installed classes; remote code is written only when a checkpoint is staged for sharing."""
    assert not list(DEMOS.rglob("*.py"))
    for name in NAMES:
        assert "auto_map" not in json.loads((DEMOS / name / "config.json").read_text())
        assert "auto_map" not in json.loads((DEMOS / name / "processor_config.json").read_text())


STAGED_IN_FRESH_PROCESS = """
import json, sys
sys.modules["ella_v_hf"] = None  # the package cannot be imported at all
import torch
from transformers import AutoModel, AutoProcessor, pipeline
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
torch.manual_seed(0)
out = model.generate(**processor(["Hello there."]), do_sample=False)
tts = pipeline("text-to-speech", model=sys.argv[1], trust_remote_code=True)
speech = tts("Hello there.", forward_params={"do_sample": False})
print(json.dumps({"module": type(model).__module__, "sequences": out.sequences.tolist(),
                  "pipeline_samples": int(speech["audio"].shape[-1]), "rate": speech["sampling_rate"]}))
"""


def test_staged_demo_loads_in_a_fresh_process_without_the_package(tmp_path):
    import os

    from ella_v_hf.hub import remote_code_requirements
    from ella_v_hf.synthesis import load_checkpoint

    stage = tmp_path / "stage"
    result = subprocess.run([sys.executable, "-m", "ella_v_hf.cli", "push", "--model", str(DEMOS / "ella-v-demo"), "--dry-run", str(stage), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"modeling_ella_v_tts.py", "processing_ella_v.py", "tokenization_ella_v.py"} <= {p.name for p in stage.iterdir()}
    card = (stage / "README.md").read_text()
    packages = remote_code_requirements(stage)
    assert {"phonemizer", "num2words", "soxr", "soundfile"} <= set(packages) and "ella_v_hf" not in packages
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", STAGED_IN_FRESH_PROCESS, str(stage)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules.") and remote["rate"] == 16000 and remote["pipeline_samples"] > 0
    model, processor = load_checkpoint(DEMOS / "ella-v-demo")
    torch.manual_seed(0)
    local = model.generate(**processor(["Hello there."]), do_sample=False)
    assert remote["sequences"] == local.sequences.tolist()
    assert card.startswith("---")


def test_staging_never_deletes_or_overwrites(tmp_path):
    from ella_v_hf.hub import stage_for_hub

    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("my work")
    with pytest.raises(ValueError, match="not empty"):
        stage_for_hub(DEMOS / "ella-v-demo", keep)
    with pytest.raises(ValueError, match="outside the model directory"):
        stage_for_hub(DEMOS / "ella-v-demo", DEMOS / "ella-v-demo" / "stage")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        stage_for_hub(DEMOS / "ella-v-demo", tmp_path / "file")
    assert (keep / "notes.txt").read_text() == "my work" and (tmp_path / "file").read_text() == "x"
    assert not (DEMOS / "ella-v-demo" / "stage").exists()
