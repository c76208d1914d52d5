#!/usr/bin/env bash
# The README / model-card report of the bundled demos (after training/recipes/demo.sh).
#
#   bash evaluation/recipes/evaluate_demo.sh RUNS_DIR [MODELS_DIR] [NAMES]
#
# MODELS_DIR holds ella-v-demo and vall-e-demo (default: the bundled ones); NAMES picks among them
# ("ella-v vall-e", the default, or one of the two: e.g. to evaluate one as soon as it is trained).
# Kathleen held-out utterances without a prompt (what `ella-v synthesize` does by default; greedy and
# top-p), with cross-sentence prompts from the same speaker (each item the next utterance with
# another sentence), Harvard's 50 unseen sentences (flite rms references) prompted the same way, and
# the hard-sentence list with a fixed Kathleen prompt, each greedy and at top-p; pocketsphinx WER/CER, resemblyzer SIM, INF, CUT, duration ratio, RTF, and
# (without a prompt) the stage rows: the codec's first codebook alone and the GAR's generated first
# codebook alone; for ELLA-V also with EOP sampled like any token (eop_quantile=off, the paper's
# decoding). Every sampling strategy runs with three seeds (--seeds 3: the tables give the mean and
# spread; one seed moves top-p WER by several points on ~100 items); greedy runs once. The models run
# in parallel, one CPU thread each. Then
# evaluation/measure_nar.py on the Harvard set for each, and the model cards' one table with the targets'
# ratios (evaluation/card_table.py -> RUNS/eval/card-table.md).
set -euo pipefail
RUNS=$(realpath "${1:?usage: evaluate_demo.sh RUNS_DIR [MODELS_DIR] [NAMES]}")
MODELS=$(realpath "${2:-$(python3 -c 'import ella_v_hf, os; print(os.path.join(os.path.dirname(ella_v_hf.__file__), "demo_models"))')}")
HARD=$(python3 -c 'import ella_v_hf.evaluation as e, os; print(os.path.join(os.path.dirname(e.__file__), "eval_sentences", "hard_sentences.txt"))')
# The hard sentences' fixed prompt: the first held-out Kathleen utterance.
{ read -r PROMPT_AUDIO; read -r PROMPT_TEXT; } < <(python3 -c 'import csv,sys; r=next(csv.DictReader(open(sys.argv[1]+"/metadata.csv"))); print(sys.argv[1]+"/"+r["file_name"]); print(r["text"])' "$RUNS/kathleen_heldout")
NAMES=${3:-ella-v vall-e}
mkdir -p "$RUNS/eval"
for model in $NAMES; do
    (
        export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
        SWEEP="greedy;top_p=0.9"  # the checkpoint's generation_config (the ELLA-V demo's: eop_quantile 0.5)
        [ "$model" = ella-v ] && SWEEP="$SWEEP;greedy,eop_quantile=off;top_p=0.9,eop_quantile=off"  # and the paper's decoding
        ella-v evaluate --model "$MODELS/$model-demo" --eval "$RUNS/kathleen_heldout" --prompt-mode none --seeds 3 \
            --stages --sweep "$SWEEP" --out "$RUNS/eval/$model-kathleen-none.json"
        ella-v evaluate --model "$MODELS/$model-demo" --eval "$RUNS/kathleen_heldout" --prompt-mode cross --seeds 3 \
            --sweep "greedy;top_p=0.9" --out "$RUNS/eval/$model-kathleen.json"
        ella-v evaluate --model "$MODELS/$model-demo" --eval "$RUNS/harvard50" --prompt-mode cross --seeds 3 \
            --stages --sweep "greedy;top_p=0.9" --out "$RUNS/eval/$model-harvard50.json"
        ella-v evaluate --model "$MODELS/$model-demo" --eval "$HARD" --prompt-audio "$PROMPT_AUDIO" \
            --prompt-text "$PROMPT_TEXT" --seeds 3 --sweep "greedy;top_p=0.9" --out "$RUNS/eval/$model-hard.json"
    ) > "$RUNS/eval/$model.log" 2>&1 &
done
wait
for model in $NAMES; do  # what each codebook carries, and the NAR's share of it (a perfect GAR)
    python3 -m ella_v_hf.evaluation.measure_nar --model "$MODELS/$model-demo" --data "$RUNS/harvard50" --n 50 --json \
        > "$RUNS/eval/$model-nar-ceiling.json"
done
for model in $NAMES; do cat "$RUNS/eval/$model"-*.md "$RUNS/eval/$model-nar-ceiling.json"; done
python3 -m ella_v_hf.evaluation.card_table "$RUNS/eval" --models $NAMES --targets > "$RUNS/eval/card-table.md"
cat "$RUNS/eval/card-table.md"
