"""Packaging for ella-v-hf.

The repository keeps the design card's top level (``ella_v_hf/ modeling/ processing/ training/
evaluation/``); ``package_dir`` installs the folders as ``ella_v_hf.modeling``, ``ella_v_hf.processing``,
``ella_v_hf.training`` and ``ella_v_hf.evaluation`` (also in editable installs), so nothing generic
lands in site-packages.

The base install synthesises and prepares data; the extras add what only some commands need
(each command that needs one says which ``pip install`` line is missing).

Install torch first (``pip install torch==2.13.0`` takes the CPU wheel here); a bare ``torch``
requirement with no torch installed pulls several GB of CUDA packages.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
TRAIN = ["accelerate>=1.0", "scikit-learn>=1.3"]  # TensorBoard logging turns on when `tensorboard` is installed
EVAL = ["evaluate>=0.4", "jiwer>=3.0", "pocketsphinx>=5.0", "matplotlib>=3.7"]
PLOT = ["matplotlib>=3.7"]
TEXTGRID = ["praatio>=6.0"]
DEMO = ["gradio>=6,<7", "imageio-ffmpeg>=0.5", *PLOT]  # ella-v demo (ffmpeg for streamed audio; matplotlib for the plot)

setup(
    name="ella-v-hf",
    version="0.1.0",
    description="ELLA-V: stable neural codec language modeling with alignment-guided sequence reordering, for transformers",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
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
        "ella_v_hf.training": ["configs/*.json", "recipes/*.sh"],
        "ella_v_hf.evaluation": ["metrics/*.py", "eval_sentences/*.txt", "recipes/*.sh"],
    },
    install_requires=[
        "torch>=2.4",
        "transformers>=5.24,<6",
        "safetensors>=0.4",
        "huggingface_hub>=1.0",
        "numpy>=1.24",
        "phonemizer>=3.2",
        "espeakng-loader>=0.2",
        "num2words>=0.5.12",
        "soundfile>=0.12",
        "soxr>=0.3",
        "tqdm>=4.60",
        "datasets>=4.0",
    ],
    extras_require={
        "train": TRAIN,
        "eval": EVAL,
        "plot": PLOT,
        "textgrid": TEXTGRID,
        "demo": DEMO,
        "dev": ["pytest>=8", "hypothesis>=6", "ruff>=0.6", *TRAIN, *EVAL, *PLOT, *TEXTGRID, *DEMO],
    },
    entry_points={"console_scripts": ["ella-v=ella_v_hf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
