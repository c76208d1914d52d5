"""The accelerator check (evaluation/device_check.py) on the CPU with a tiny model: every figure is
measured and consistent, the FLOPs are the projection's, and a spent time budget skips, never guesses."""

from __future__ import annotations

import json

import pytest

from ella_v_hf.evaluation import device_check, project_training
from ella_v_hf.training.trainer import TrainConfig

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64)


def test_device_check_measures_training_and_inference():
    results = device_check.run_device_check(
        device="cpu", preset="tiny", dtype="float32", train_steps=1, repeats=1, peak="2.0", overrides=TINY,
        batches=(1, 2), max_tokens_per_batch=1100, phonemes=3,
    )
    config = TrainConfig.from_file(results["config"])
    config.preset, config.max_tokens_per_batch, config.model_overrides = "tiny", 1100, TINY
    expected = project_training.step_flops(config)
    for name in ("gar", "nar"):
        figures = results["training"][name]
        assert figures["flops_per_step"] == pytest.approx(expected[name])  # what the projection counts
        assert figures["tokens_per_second"] == pytest.approx(figures["tokens_per_step"] / figures["seconds_per_step"], rel=1e-2)
        assert figures["mfu"] == pytest.approx(figures["flops_per_step"] / figures["seconds_per_step"] / 2e12, rel=1e-2)
    assert results["batch"]["rows"] == 1 and results["training"]["gar"]["tokens_per_step"] == 1100
    for size in ("1", "2"):
        row = results["inference"][size]
        assert row["acoustic_frames"] > 0 and row["ella_v_tokens_per_second"] > 0 and row["llama_tokens_per_second"] > 0
        assert row["rtf"] == pytest.approx(row["ella_v_seconds"] / (row["acoustic_frames"] / device_check.FRAME_RATE), rel=1e-2)
    assert "GAR inference, batch 2" in device_check.markdown(results)


def test_device_check_cli_skips_what_the_budget_does_not_allow(tmp_path, capsys):
    out = tmp_path / "check.json"
    device_check.main(["--device", "cpu", "--preset", "tiny", "--dtype", "float32", "--time-budget", "0", "--out", str(out)])
    results = json.loads(out.read_text())
    assert results["training"] == {"gar": {"skipped": "time budget spent"}, "nar": {"skipped": "time budget spent"}}
    assert results["inference"] == {"1": {"skipped": "time budget spent"}, "16": {"skipped": "time budget spent"}}
    assert "skipped: time budget spent" in capsys.readouterr().out


def test_peak_is_stated_or_known():
    import torch

    assert device_check.peak_tflops(torch.device("cpu"), "bf16", "auto") is None
    assert device_check.peak_tflops(torch.device("cpu"), "bf16", "312") == 312.0


def test_projection_is_flops_times_steps_over_throughput():
    import importlib.resources

    config = TrainConfig.from_file(str(importlib.resources.files("ella_v_hf.training") / "configs" / "base-ella-v.json"))
    config.preset, config.model_overrides, config.max_steps = "tiny", TINY, 10_000_000
    result = project_training.project(config, peak_tflops=100.0, mfu=0.5, processes=4)
    flops = project_training.step_flops(config)
    assert flops["gar"] > 0 and flops["nar"] > 0 and result["flops_per_batch"]["total"] == flops["gar"] + flops["nar"]
    expected = flops["total"] * 10_000_000 * 4 / (100e12 * 0.5) / 3600
    assert expected > 1 and result["gpu_hours"] == pytest.approx(expected, abs=0.05)
    config.stage = "gar"
    assert project_training.step_flops(config)["nar"] == 0.0
