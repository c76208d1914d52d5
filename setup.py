"""Packaging for ella-v-hf.

The repository keeps the design card's top level (``ella_v_hf/ modeling/ processing/ training/
evaluation/``); ``package_dir`` installs the folders as ``ella_v_hf.modeling``, ``ella_v_hf.processing``,
``ella_v_hf.training`` and ``ella_v_hf.evaluation`` (also in editable installs), so nothing generic
lands in site-packages.

The base install synthesises and prepares data; the extras add what only some commands need
(each command that needs one says which ``pip install`` line is missing).

Install torch first: ``pip install torch==2.13.0`` is the CUDA build on PyPI (GPU machines); a
CPU-only machine takes PyTorch's CPU wheel (``--index-url https://download.pytorch.org/whl/cpu``).

The ranges are what CI verifies (``.ci/run``): every lower bound is installed and tested in a fresh
environment (``.ci/lower-bounds.txt``), and every open upper bound is tested at the newest release
the resolver picks on the day CI runs. torch is held below the next release because CI installs
only the CPU wheel of the tested release.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
TRAIN = ["accelerate>=1.3", "scikit-learn>=1.4.2"]  # TensorBoard logging turns on when `tensorboard` is installed
# speechmos ships DNSMOS's ONNX weights but declares none of what it imports (librosa, onnxruntime, requests).
EVAL = ["evaluate>=0.4", "jiwer>=3.0", "pocketsphinx>=5.0", "matplotlib>=3.8.4",
        "speechmos>=0.0.1.1", "onnxruntime>=1.19", "librosa>=0.10.2", "requests>=2.32.2", "pesq>=0.0.4", "pystoi>=0.4.1"]
PLOT = ["matplotlib>=3.8.4"]
TEXTGRID = ["praatio>=6.1"]
DEMO = ["gradio>=6.27,<7", "imageio-ffmpeg>=0.5", *PLOT]  # ella-v demo (ffmpeg for streamed audio; matplotlib for the plot)

setup(
    name="ella-v-hf",
    version="0.1.0",
    description="ELLA-V: stable neural codec language modeling with alignment-guided sequence reordering, for transformers",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=[
        "ella_v_hf",
        "ella_v_hf.modeling",
        "ella_v_hf.processing",
        "ella_v_hf.processing.aligners",
        "ella_v_hf.training",
        "ella_v_hf.evaluation",
    ],
    package_dir={
        "ella_v_hf": "ella_v_hf",
        "ella_v_hf.modeling": "modeling",
        "ella_v_hf.processing": "processing",
        "ella_v_hf.processing.aligners": "processing/aligners",
        "ella_v_hf.training": "training",
        "ella_v_hf.evaluation": "evaluation",
    },
    package_data={
        "ella_v_hf": ["demo_models/*/*.*", "pretrained/*/*.*"],
        "ella_v_hf.processing": ["*.json"],
        "ella_v_hf.training": ["configs/*.json", "configs/*.yaml", "recipes/*.sh"],
        "ella_v_hf.evaluation": ["metrics/*.py", "eval_sentences/*.txt", "recipes/*.sh"],
    },
    install_requires=[
        "torch>=2.13,<2.14",
        "transformers>=5.24,<6",
        "safetensors>=0.8",
        "huggingface_hub>=1.31",
        "numpy>=2.0",
        "phonemizer>=3.3",
        "espeakng-loader>=0.2.1",
        "num2words>=0.5.12",
        "soundfile>=0.13",
        "soxr>=0.4",
        "tqdm>=4.66.3",
        "datasets>=4.0",
    ],
    extras_require={
        "train": TRAIN,
        "eval": EVAL,
        "plot": PLOT,
        "textgrid": TEXTGRID,
        "demo": DEMO,
        # selenium drives the web demo's browser test (Debian's chromium and chromium-driver)
        "dev": ["pytest>=8", "hypothesis>=6", "ruff>=0.6", "selenium>=4.20", *TRAIN, *EVAL, *PLOT, *TEXTGRID, *DEMO],
    },
    entry_points={"console_scripts": ["ella-v=ella_v_hf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
