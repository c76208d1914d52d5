"""Hub remote code: a saved checkpoint loads with trust_remote_code=True in a fresh Python process
in which the ella_v_hf package cannot be imported at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch
from conftest import tiny_config, tiny_nar_config

from ella_v_hf import EllaVForCausalLM, EllaVNARModel

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["ella_v_hf"] = None  # make the package unimportable, whatever is installed
    try:
        import ella_v_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("ella_v_hf is importable in the fresh process")
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    gar_dir, nar_dir, ids_path = sys.argv[1:4]
    data = json.load(open(ids_path))
    ids = torch.tensor(data["ids"])
    gar = AutoModelForCausalLM.from_pretrained(gar_dir, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(gar_dir, trust_remote_code=True).eval()
    config = AutoConfig.from_pretrained(gar_dir, trust_remote_code=True)
    nar = AutoModel.from_pretrained(nar_dir, trust_remote_code=True).eval()
    assert "ella_v_hf" not in type(gar).__module__, type(gar).__module__
    with torch.no_grad():
        logits = gar(ids).logits
        hidden = base(ids).last_hidden_state
        nar_logits = nar(phoneme_ids=torch.tensor(data["phonemes"]), codes=torch.tensor(data["codes"]), codebook_index=2).logits
        generated = gar.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    print(json.dumps({
        "classes": [type(gar).__name__, type(base).__name__, type(config).__name__, type(nar).__name__],
        "module": type(gar).__module__,
        "logits": logits.tolist(),
        "hidden": hidden.tolist(),
        "nar_logits": nar_logits.tolist(),
        "generated": generated.tolist(),
    }))
    """
)


def test_remote_code_loads_in_fresh_process_without_the_package(tmp_path):
    gar = EllaVForCausalLM(tiny_config(prefix_bidirectional_attention=True)).eval()
    nar = EllaVNARModel(tiny_nar_config()).eval()
    gar.save_pretrained(tmp_path / "gar")
    nar.save_pretrained(tmp_path / "nar")
    for folder in ("gar", "nar"):
        names = {p.name for p in (tmp_path / folder).iterdir()}
        assert {"configuration_ella_v.py", "modeling_ella_v.py", "sequence_layout.py", "model.safetensors"} <= names
    auto_map = json.loads((tmp_path / "gar" / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_ella_v.EllaVConfig",
        "AutoModel": "modeling_ella_v.EllaVModel",
        "AutoModelForCausalLM": "modeling_ella_v.EllaVForCausalLM",
    }

    ids = torch.tensor([[4, 7, 1, 4, 20, 21, 2, 7, 22]])
    phonemes = torch.tensor([[4, 7, 9]])
    codes = torch.randint(0, 16, (1, 4, 6))
    (tmp_path / "inputs.json").write_text(json.dumps({"ids": ids.tolist(), "phonemes": phonemes.tolist(), "codes": codes.tolist()}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "gar"), str(tmp_path / "nar"), str(tmp_path / "inputs.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["classes"] == ["EllaVForCausalLM", "EllaVModel", "EllaVConfig", "EllaVNARModel"]
    assert out["module"].startswith("transformers_modules.")
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(out["logits"]), gar(ids).logits)
        torch.testing.assert_close(torch.tensor(out["hidden"]), gar.model(ids).last_hidden_state)
        torch.testing.assert_close(torch.tensor(out["nar_logits"]), nar(phoneme_ids=phonemes, codes=codes, codebook_index=2).logits)
        expected = gar.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out["generated"] == expected.tolist()
