"""The one home of transformers internals (``modeling/transformers_compat.py``): each feature check
says yes on the tested releases and no, clearly, where the internal is missing."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import transformers
from conftest import tiny_config
from transformers import GenerationConfig, GenerationMixin

import ella_v_hf
from ella_v_hf import EllaVForCausalLM
from ella_v_hf.modeling import transformers_compat as compat

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_transformers_is_a_tested_release_and_setup_py_allows_exactly_the_tested_range():
    assert compat.transformers_release() in compat.TESTED_TRANSFORMERS
    setup = (ROOT / "setup.py").read_text()
    assert f'"transformers>={compat.TESTED_TRANSFORMERS[0]},' in setup
    lower = (ROOT / ".ci" / "lower-bounds.txt").read_text()
    assert re.search(rf"^transformers=={re.escape(compat.TESTED_TRANSFORMERS[0])}\.\d+$", lower, re.M)


def test_jump_forward_check_accepts_verified_releases_and_names_the_others():
    assert compat.jump_forward_unsupported() is None  # CI installs only verified releases
    for release in compat.JUMP_FORWARD_VERIFIED:
        assert compat.jump_forward_unsupported(f"{release}.3") is None
    reason = compat.jump_forward_unsupported("5.99.0")
    assert "verified on transformers" in reason and "5.99.0" in reason


def test_jump_forward_check_names_a_missing_hook(monkeypatch):
    monkeypatch.delattr(GenerationMixin, "_get_candidate_generator")
    assert "_get_candidate_generator" in compat.jump_forward_unsupported()


def test_default_generation_params_with_and_without_the_private_method(monkeypatch):
    defaults = compat.default_generation_params()
    assert defaults["num_beams"] == 1 and defaults["do_sample"] is False
    monkeypatch.delattr(GenerationConfig, "_get_default_generation_params")
    public = compat.default_generation_params()  # a fresh GenerationConfig's own values
    assert public == {k: v for k, v in GenerationConfig().to_dict().items() if not k.startswith("_")}


def test_adjust_generation_arguments_are_named_from_the_stock_signature():
    named = compat.adjust_generation_arguments(("cache", False, None, True), {"revision": "r1"})
    assert named == {"cache_dir": "cache", "force_download": False, "proxies": None, "local_files_only": True, "revision": "r1"}
    with pytest.raises(compat.TransformersCompatibilityError, match="tested with"):
        compat.adjust_generation_arguments(tuple(range(40)), {})


def test_without_remote_code_restores_what_it_cleared_and_refuses_a_missing_attribute(tmp_path):
    model = EllaVForCausalLM(tiny_config())
    before = type(model)._auto_class
    with compat.without_remote_code((model, model.config)):
        assert model._auto_class is None and model.config._auto_class is None
    assert "_auto_class" not in vars(model) and type(model)._auto_class == before
    model.save_pretrained(tmp_path / "plain", remote_code=False)
    assert not list((tmp_path / "plain").glob("*.py"))  # weights and config only
    model.save_pretrained(tmp_path / "remote")
    assert (tmp_path / "remote" / "transformers_compat.py").exists()  # travels with the remote code

    class Plain:
        pass

    with pytest.raises(compat.TransformersCompatibilityError, match=re.escape(transformers.__version__)):
        with compat.without_remote_code((Plain(),)):
            pass


def test_the_auto_modules_that_trigger_registration_exist():
    """``import ella_v_hf`` registers the package when these modules load (it cannot import the
    compatibility module: it imports neither torch nor transformers)."""
    missing = [name for name in ella_v_hf._AUTO_MODULES if importlib.util.find_spec(name) is None]
    assert not missing, f"transformers {transformers.__version__} renamed its Auto modules: {missing}"
