"""Sharing checkpoints: stage a model directory with its model card, and upload it to the Hub."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

REQUIRED_FILES = ("config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json")
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def default_card(model_dir: str | os.PathLike) -> str:
    """A model card generated from the checkpoint's config (for checkpoints without one)."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    gar, nar, codec = config["gar_config"], config["nar_config"], config["codec_config"]
    name = Path(model_dir).resolve().name
    return f"""---
library_name: transformers
pipeline_tag: text-to-speech
tags: [ella-v, codec-language-model, tts]
---

# {name}

An ELLA-V text-to-speech checkpoint (layout `{gar['layout']}`) made with
[ella-v-hf](https://pypi.org/project/ella-v-hf/): a GAR of {gar['num_hidden_layers']} layers x {gar['hidden_size']}
predicting the first codebook, a NAR of {nar['num_hidden_layers']} layers x {nar['hidden_size']} predicting
codebooks 2..{gar['num_codebooks']}, and the `{codec.get('model_type')}` codec at {codec.get('sampling_rate')} Hz.

```python
from transformers import pipeline
tts = pipeline("text-to-speech", model="REPO_ID", trust_remote_code=True)
```

Training data, recipe, measured results and limitations: not documented by its author.
"""


def check_checkpoint(model_dir: str | os.PathLike) -> Path:
    """Check that ``model_dir`` is a complete EllaVForTextToSpeech directory with readable weights.

    Raises:
        FileNotFoundError: A required file is missing.
        ValueError: ``model.safetensors`` is truncated or corrupt.
    """
    path = Path(model_dir)
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a complete EllaVForTextToSpeech directory: missing {missing}")
    try:
        from safetensors import safe_open

        with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
            handle.keys()
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise ValueError(f"{path / 'model.safetensors'} is truncated or corrupt: {error}") from error
    return path


def stage_for_hub(model_dir: str | os.PathLike, out: str | os.PathLike, card: str | os.PathLike | None = None) -> Path:
    """Copy a checkpoint into ``out`` with ``README.md`` (the model card) and check it is complete.

    Raises:
        FileNotFoundError / ValueError: An incomplete or corrupt checkpoint (:func:`check_checkpoint`).
        ValueError: Pickle-based weight files.
    """
    source, target = check_checkpoint(model_dir), Path(out)
    unsafe = [p.name for p in source.rglob("*") if p.suffix in FORBIDDEN_SUFFIXES]
    if unsafe:
        raise ValueError(f"{source} holds pickle-based files {unsafe}; only safetensors are shared")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    text = Path(card).read_text(encoding="utf-8") if card else default_card(source)
    (target / "README.md").write_text(text, encoding="utf-8")
    return target


def push_to_hub(model_dir: str | os.PathLike, repo_id: str, card: str | None = None, private: bool = False, token: str | None = None) -> str:
    """Stage and upload a checkpoint; returns the commit URL."""
    import tempfile

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        staged = stage_for_hub(model_dir, Path(tmp) / "stage", card)
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(staged), repo_id=repo_id, commit_message="Upload ELLA-V checkpoint")
        return str(info)
