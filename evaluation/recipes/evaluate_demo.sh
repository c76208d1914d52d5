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
# the hard-sentence list with a fixed Kathleen prompt, each greedy and at top-p; pocketsphinx WER/CER,
# resemblyzer SIM (the prompted sets: resemblyzer must be installed, checked before anything runs),
# DNSMOS, INF, CUT, duration ratio, RTF, and (without a prompt) the stage rows: the codec's first
# codebook alone and the GAR's generated first codebook alone; for ELLA-V also with EOP sampled like
# any token (eop_quantile=off, the paper's decoding). Every sampling strategy runs with three seeds (--seeds 3: the tables give the mean and
# spread; one seed moves top-p WER by several points on ~100 items); greedy runs once. The evaluations
# run JOBS at a time (default 2), one CPU thread each, the longest first. Then
# evaluation/measure_nar.py on the Harvard set for each, and the model cards' one table with the targets'
# ratios (evaluation/card_table.py -> RUNS/eval/card-table.md).
set -euo pipefail
RUNS=$(realpath "${1:?usage: evaluate_demo.sh RUNS_DIR [MODELS_DIR] [NAMES]}")
MODELS=$(realpath "${2:-$(python3 -c 'import ella_v_hf, os; print(os.path.join(os.path.dirname(ella_v_hf.__file__), "demo_models"))')}")
HARD=$(python3 -c 'import ella_v_hf.evaluation as e, os; print(os.path.join(os.path.dirname(e.__file__), "eval_sentences", "hard_sentences.txt"))')
# The hard sentences' fixed prompt: the first held-out Kathleen utterance.
{ read -r PROMPT_AUDIO; read -r PROMPT_TEXT; } < <(python3 -c 'import csv,sys; r=next(csv.DictReader(open(sys.argv[1]+"/metadata.csv"))); print(sys.argv[1]+"/"+r["file_name"]); print(r["text"])' "$RUNS/kathleen_heldout")
NAMES=${3:-ella-v vall-e}
JOBS=${JOBS:-2}  # evaluations at a time, one CPU thread each
python3 -c "import resemblyzer" 2>/dev/null || {
    echo "the prompted sets' SIM needs resemblyzer: $(python3 -c 'from ella_v_hf.evaluation.judges import RESEMBLYZER_INSTALL; print(RESEMBLYZER_INSTALL)')" >&2
    exit 1
}
mkdir -p "$RUNS/eval"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
evaluate() {  # MODEL SET [ella-v evaluate arguments...]: one evaluation, logged to RUNS/eval/MODEL-SET.log
    local model=$1 set=$2
    shift 2
    ella-v evaluate --model "$MODELS/$model-demo" --seeds 3 --out "$RUNS/eval/$model-$set.json" "$@" \
        > "$RUNS/eval/$model-$set.log" 2>&1 || { echo "$model-$set failed: see $RUNS/eval/$model-$set.log" >&2; return 1; }
}
# The longest first (ELLA-V without a prompt has four strategies and the stage rows); JOBS at a time.
# An evaluation whose MODEL-SET.json exists is kept (a rerun resumes; delete the file to redo it).
failed=0
for set in kathleen-none kathleen harvard50 hard; do
    for model in $NAMES; do
        [ -f "$RUNS/eval/$model-$set.json" ] && continue
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
        case $set in
        kathleen-none)
            SWEEP="greedy;top_p=0.9"  # the checkpoint's generation_config (the ELLA-V demo's: eop_quantile 0.5)
            [ "$model" = ella-v ] && SWEEP="$SWEEP;greedy,eop_quantile=off;top_p=0.9,eop_quantile=off"  # and the paper's decoding
            evaluate "$model" "$set" --eval "$RUNS/kathleen_heldout" --prompt-mode none --stages --sweep "$SWEEP" & ;;
        kathleen) evaluate "$model" "$set" --eval "$RUNS/kathleen_heldout" --prompt-mode cross --sim resemblyzer --sweep "greedy;top_p=0.9" & ;;
        harvard50) evaluate "$model" "$set" --eval "$RUNS/harvard50" --prompt-mode cross --sim resemblyzer --stages --sweep "greedy;top_p=0.9" & ;;
        hard) evaluate "$model" "$set" --eval "$HARD" --prompt-audio "$PROMPT_AUDIO" --prompt-text "$PROMPT_TEXT" --sim resemblyzer \
            --sweep "greedy;top_p=0.9" & ;;
        esac
    done
done
for job in $(jobs -rp); do wait "$job" || failed=1; done
[ "$failed" = 0 ] || { echo "an evaluation failed (its log is in $RUNS/eval)" >&2; exit 1; }
for model in $NAMES; do  # what each codebook carries, and the NAR's share of it (a perfect GAR)
    if [ ! -f "$RUNS/eval/$model-nar-ceiling.json" ]; then
        python3 -m ella_v_hf.evaluation.measure_nar --model "$MODELS/$model-demo" --data "$RUNS/harvard50" --n 50 --json \
            > "$RUNS/eval/$model-nar-ceiling.json.part"
        mv "$RUNS/eval/$model-nar-ceiling.json.part" "$RUNS/eval/$model-nar-ceiling.json"
    fi
done
for model in $NAMES; do cat "$RUNS/eval/$model"-*.md "$RUNS/eval/$model-nar-ceiling.json"; done
python3 -m ella_v_hf.evaluation.card_table "$RUNS/eval" --models $NAMES --targets > "$RUNS/eval/card-table.md"
cat "$RUNS/eval/card-table.md"
