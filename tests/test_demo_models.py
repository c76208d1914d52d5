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


def test_demos_fit_in_40_mb_and_have_the_nars_their_cards_describe():
    """ELLA-V's NAR reads each frame's aligned phoneme (frame_phonemes), which VALL-E cannot give it;
    otherwise the two NARs are the same recipe: same parameter names and shapes except that embedding."""
    total = sum(p.stat().st_size for name in NAMES for p in (DEMOS / name).rglob("*") if p.is_file())
    assert total <= 40_000_000, total
    shapes = {}
    for name in NAMES:
        with safe_open(str(DEMOS / name / "model.safetensors"), framework="pt") as handle:
            shapes[name] = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys() if k.startswith("nar.")}
        nar_config = json.loads((DEMOS / name / "config.json").read_text())["nar_config"]
        assert nar_config.get("frame_phonemes", False) == (name == "ella-v-demo")
    extra = set(shapes["ella-v-demo"]) - set(shapes["vall-e-demo"])
    assert extra == {"nar.frame_phoneme_embeddings.weight"} and set(shapes["vall-e-demo"]) <= set(shapes["ella-v-demo"])
    assert all(shapes["ella-v-demo"][k] == v for k, v in shapes["vall-e-demo"].items())


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


@pytest.mark.parametrize("name", sorted(NAMES))
def test_bundled_remote_code_is_the_code_we_ship(name, tmp_path):
    """The .py files a Hub user runs with trust_remote_code are exactly what save_pretrained writes today."""
    from ella_v_hf.synthesis import load_checkpoint

    model, processor = load_checkpoint(DEMOS / name)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    bundled = sorted(p.relative_to(DEMOS / name) for p in (DEMOS / name).rglob("*.py"))
    assert bundled == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py"))
    stale = [str(p) for p in bundled if (DEMOS / name / p).read_text() != (tmp_path / p).read_text()]
    assert not stale, f"re-run `ella-v assemble` (or copy the code): {stale} differ from the package"
