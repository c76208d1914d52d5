#!/usr/bin/env bash
# The screen every recipe or decoding change of the ELLA-V demo has gone through since 2026-11-30
# (docs/experiments.md): the held-out Kathleen utterances of training/recipes/demo.sh without
# a prompt, pocketsphinx, the stage rows (each strategy's first codebook decoded alone), no speaker
# similarity, three seeds per sampling strategy (greedy runs once), one CPU thread.
#
#   bash evaluation/recipes/screen.sh RUNS_DIR MODEL NAME [SWEEP] [SEED NSEEDS]
#
# SWEEP defaults to "greedy;top_p=0.9" (the model's generation_config supplies the rest, e.g. the
# demo's eop_quantile, guidance_scale and first_level_decoding; add e.g. ",first_level_decoding=code"
# to a strategy to override one). SEED NSEEDS split the three seeds over two processes
# (e.g. "0 2" and "2 1"): per-item seeds make the draws the same as in one run.
# Writes RUNS_DIR/screens/NAME.{json,md,png,log}.
set -euo pipefail
RUNS=$(realpath "${1:?usage: screen.sh RUNS_DIR MODEL NAME [SWEEP] [SEED NSEEDS]}")
MODEL=${2:?usage: screen.sh RUNS_DIR MODEL NAME [SWEEP] [SEED NSEEDS]}
NAME=${3:?usage: screen.sh RUNS_DIR MODEL NAME [SWEEP] [SEED NSEEDS]}
SWEEP=${4:-greedy;top_p=0.9}
SEED=${5:-0}
NSEEDS=${6:-3}
mkdir -p "$RUNS/screens"
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ella-v evaluate --model "$MODEL" --eval "$RUNS/kathleen_heldout" --prompt-mode none \
    --stages --sim none --seed "$SEED" --seeds "$NSEEDS" --sweep "$SWEEP" --out "$RUNS/screens/$NAME.json" \
    > "$RUNS/screens/$NAME.log" 2>&1
