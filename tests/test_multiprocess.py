"""The multi-process path users scale out on: two processes (`torchrun --nproc_per_node 2`, DDP over
gloo on CPU; `accelerate launch --multi_gpu` on GPUs takes the same code path) compute what one
process with the same global batch computes, split the data without overlap, write from the main
process only, resume a killed run exactly, and their checkpoint loads in one process.

(`accelerate launch --cpu --num_processes 2` starts a single process: Accelerate's multi-CPU
launcher needs MPI; torchrun is the launcher for several CPU processes.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port
from safetensors.torch import load_file

from ella_v_hf.training.trainer import rank_share

SMALL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
#: Both halves (GAR and NAR), dropout on: what a real run does.
RECIPE = {"preset": "tiny", "model_overrides": SMALL, "warmup_steps": 2, "max_tokens_per_batch": 700, "eval_every": 1000,
          "log_every": 1, "keep_last": 5, "seed": 3}
#: Losses and weights of two processes against one: float32 sums in another order (DDP's all-reduce
#: against accumulation), so equal to about 1e-6 relative; this bound leaves room, and a wrong
#: batch, seed or learning rate moves them by far more (1e-2 and up).
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def train_command(processes: int, config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    cli = ["-m", "ella_v_hf.cli", "train", "--config", str(config), "--data", str(data), "--out", str(out), *extra]
    if processes == 1:
        return [sys.executable, *cli]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(free_port())]
    return [*launch, *cli]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(processes: int, recipe: dict, data: Path, out: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    config = tmp_path / f"recipe-{out.name}.json"
    config.write_text(json.dumps({**RECIPE, **recipe}))
    result = subprocess.run(train_command(processes, config, data, out, *extra), capture_output=True, text=True, timeout=600,
                            env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_rank_shares_split_the_batches_without_overlap():
    batches = [[i] for i in range(11)]
    shares = [rank_share(batches, rank, 2) for rank in range(2)]
    assert shares == [[[0], [2], [4], [6], [8]], [[1], [3], [5], [7], [9]]]  # the incomplete last round is dropped
    seen = [b[0] for share in shares for b in share]
    assert len(seen) == len(set(seen)) == 10 and rank_share(batches, 0, 1) == batches


def test_two_processes_train_like_one(prepared_corpus, tmp_path):
    """2 processes x 3 steps against 1 process x 6 steps with 2-step accumulation (a step is one
    batch per process, so the two-process recipe halves the step counts: run length and warmup):
    the same batches, seeds, learning rates and updates, so the same losses and weights."""
    one = tmp_path / "one"
    run(1, {"max_steps": 6, "warmup_steps": 2, "gradient_accumulation_steps": 2, "save_every": 6}, prepared_corpus, one, tmp_path)
    two = tmp_path / "two"
    result = run(2, {"max_steps": 3, "warmup_steps": 1, "save_every": 3}, prepared_corpus, two, tmp_path)
    # Only the main process writes: one log record per step, one checkpoint, one model.
    records = log(two)
    assert [r["step"] for r in records if "lr" in r] == [1, 2, 3]
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-3"]
    assert result.stderr.count("ella-v train:") <= 1
    # Each update's learning rate is the one-process run's at the same update.
    lr_one = [r["lr"] for r in log(one) if "lr" in r][1::2]  # the one-process run logs every batch; updates at 2, 4, 6
    lr_two = [r["lr"] for r in records if "lr" in r]
    assert lr_two == pytest.approx(lr_one, rel=1e-6)
    a, b = load_file(one / "model" / "model.safetensors"), load_file(two / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    moved = [k for k in a if not torch.allclose(a[k], b[k], **TOLERANCE)]
    assert not moved, f"{len(moved)} tensors differ between one and two processes, e.g. {moved[:3]}"
    # The two-process checkpoint loads in one process and synthesises.
    from ella_v_hf import EllaVForTextToSpeech, EllaVProcessor

    model = EllaVForTextToSpeech.from_pretrained(two / "model").eval()
    out = model.generate(**EllaVProcessor.from_pretrained(two / "model")(["Hello."]), do_sample=False, max_new_tokens=40)
    assert out.sequences.shape[0] == 1


#: Runs the CLI, but SIGKILLs the launcher and itself (the other worker dies with the launcher)
#: just as the main process commits the step-6 checkpoint: the whole job killed mid-run.
DIE_AT_STEP_6 = """
import os, signal, sys
real = os.replace
def replace(source, target, *args, **kwargs):
    if os.path.basename(str(source)) == ".tmp-step-6":
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(source, target, *args, **kwargs)
os.replace = replace
from ella_v_hf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_two_process_run_resumes_exactly(prepared_corpus, tmp_path):
    """A two-process run killed while committing its step-6 checkpoint, then resumed from step 4,
    ends where an uninterrupted two-process run ends: the same losses at every step, the same weights."""
    recipe = {"max_steps": 8, "save_every": 2}
    whole = tmp_path / "whole"
    run(2, recipe, prepared_corpus, whole, tmp_path)
    killed = tmp_path / "killed"
    config = tmp_path / "recipe-killed.json"
    config.write_text(json.dumps({**RECIPE, **recipe}))
    script = tmp_path / "die_at_step_6.py"
    script.write_text(DIE_AT_STEP_6)
    args = ["train", "--config", str(config), "--data", str(prepared_corpus), "--out", str(killed)]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    dead = subprocess.run([*launch, str(script), *args], capture_output=True, text=True, timeout=600, env=environment())
    assert dead.returncode != 0
    assert sorted(p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith("step-")) == ["step-2", "step-4"]
    deadline = time.time() + 60  # the killed job's workers are gone (they die with the launcher), so is the lock
    while time.time() < deadline and subprocess.run(["pgrep", "-f", str(script)], capture_output=True).returncode == 0:
        time.sleep(0.2)
    result = subprocess.run(train_command(2, config, prepared_corpus, killed, "--resume"), capture_output=True, text=True,
                            timeout=600, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["step"] for r in log(killed) if "lr" in r] == list(range(1, 9))  # one record per step
    losses = {r["step"]: (r.get("gar"), r.get("nar")) for r in log(killed) if "lr" in r}
    expected = {r["step"]: (r.get("gar"), r.get("nar")) for r in log(whole) if "lr" in r}
    assert losses.keys() == expected.keys()
    for step in losses:
        assert losses[step] == pytest.approx(expected[step], rel=1e-5), step
    a, b = load_file(whole / "model" / "model.safetensors"), load_file(killed / "model" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], **TOLERANCE) for k in a)


def test_trainer_fine_tuning_runs_on_two_processes(prepared_corpus, tmp_path):
    """`torchrun --nproc_per_node 2 -m ella_v_hf.training.finetune_trainer`: the Trainer's own DDP;
    one process writes the fine-tuned model, which loads in one process."""
    base = tmp_path / "base"
    run(1, {"max_steps": 1, "save_every": 1}, prepared_corpus, base, tmp_path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    result = subprocess.run([*launch, "-m", "ella_v_hf.training.finetune_trainer", "--model", str(base / "model"), "--data",
                             str(prepared_corpus), "--out", str(tmp_path / "ft"), "--max-steps", "2", "--batch-size", "2",
                             "--learning-rate", "1e-3"], capture_output=True, text=True, timeout=600, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    from ella_v_hf import EllaVForTextToSpeech

    tuned = EllaVForTextToSpeech.from_pretrained(tmp_path / "ft" / "model")
    original = EllaVForTextToSpeech.from_pretrained(base / "model")
    assert not torch.equal(tuned.gar.lm_head.weight, original.gar.lm_head.weight)
