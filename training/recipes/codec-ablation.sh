#!/usr/bin/env bash
# Which part of the learned codec's training recipe costs intelligibility: one factor at a time
# from a plain recipe, each codec measured by resynthesis of the held-out Kathleen utterances.
#
#   bash training/recipes/codec-ablation.sh RUNS_DIR [SHARED_DATA_DIR] [RUN ...]
#
# The plain recipe (`plain`): Kathleen's training prompts only, no phoneme loss, no first-level-only
# examples (first_level_fraction 0), a 128-code first level, 3,000 steps (~30 min on one thread).
# Each other run changes one thing:
#   flite      + the 1,000-utterance flite corpus (8 voices) in the codec's data
#   phoneme    + phoneme distillation (phoneme_loss_weight 0.5, alignments of the bundled codec)
#   phoneme-light  the same at weight 0.1      phoneme-W  the same at weight W (e.g. phoneme-0.25)
#   firstonly  + first_level_fraction 0.5
#   first256   a 256-code first level          first1024  a 1,024-code first level
#   long       7,000 steps (the bundled recipe's schedule)
#   bundled    the embedded codec (ella_v_hf/pretrained/codec), measured alike without training
# Every run resumes where it stopped (--resume) and is measured once it finishes:
# RUNS/codec_ablation/NAME/first_level.json (`measure_codec --prepared`: how predictable the first
# level is from the phonemes, i.e. what the GAR must learn; resynthesis does not measure it) and
# RUNS/codec_ablation/NAME/measure.json (`measure_codec --levels 1 2 4 8 --stages --quality`, the
# same 110 held-out utterances for every row; MEASURE=0 skips it). The summary table:
#   python -m ella_v_hf.evaluation.codec_ablation_table RUNS/codec_ablation
# One thread per run (OMP_NUM_THREADS=1), one run at a time. The runs decode with plain Griffin-Lim
# (no griffin_lim_sharpening, as when the first screen was measured): the rows compare codec recipes,
# and evaluation/recipes/sharpening.sh measures the waveform stage.
set -euo pipefail
RUNS=${1:?usage: codec-ablation.sh RUNS_DIR [SHARED_DATA_DIR] [RUN ...]}
SHARED=$(realpath "${2:-../shared/data}")
shift $(( $# >= 2 ? 2 : 1 ))
ORDER=("$@")
[ ${#ORDER[@]} -gt 0 ] || ORDER=(plain firstonly phoneme flite first1024 first256 long)
mkdir -p "$RUNS" && cd "$RUNS"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
BUNDLED=$(python3 -c "from ella_v_hf.processing.prepare import DEFAULT_CODEC_DIR; print(DEFAULT_CODEC_DIR)")

[ -f kathleen_only/metadata.csv ] || python3 -m ella_v_hf.training.combine_corpora --out kathleen_only \
    --corpus "$SHARED/kathleen" --hold-out "$SHARED/kathleen=0.12" --held-out-dir kathleen_heldout
mkdir -p codec_ablation/configs

recipe() {  # NAME KEY=VALUE ...: the plain recipe with the given fields changed (values are JSON)
    local name=$1; shift
    python3 - "$name" "$@" <<'EOF'
import json, sys
name, changes = sys.argv[1], sys.argv[2:]
recipe = {
    "codec": {"codebook_size": 1024, "first_codebook_size": 128, "downsample": 1, "hidden_size": 192,
              "dilations": [1, 2, 4, 8, 1]},
    "max_steps": 3000, "batch_size": 32, "crop_frames": 96, "learning_rate": 0.001, "warmup_steps": 200,
    "phoneme_loss_weight": 0.0, "first_level_fraction": 0.0,
    "eval_every": 500, "save_every": 250, "keep_last": 1, "seed": 0,
}
for change in changes:
    key, value = change.split("=", 1)
    target = recipe["codec"] if key.startswith("codec.") else recipe
    target[key.removeprefix("codec.")] = json.loads(value)
with open(f"codec_ablation/configs/{name}.json", "w") as f:
    json.dump(recipe, f, indent=1)
EOF
}

for run in "${ORDER[@]}"; do
    data=kathleen_only; extra=(); codec=codec_ablation/$run/train/model
    case $run in
        plain) recipe plain ;;
        flite)
            [ -f demo/metadata.csv ] || ella-v make-demo-corpus --out demo --n 1000 --data-dir "$SHARED"
            [ -f kathleen_flite/metadata.csv ] || python3 -m ella_v_hf.training.combine_corpora --out kathleen_flite \
                --corpus "$SHARED/kathleen" --corpus demo --hold-out "$SHARED/kathleen=0.12" --held-out-dir kathleen_heldout_flite
            recipe flite; data=kathleen_flite ;;
        phoneme|phoneme-light|phoneme-[0-9]*)
            [ -f kathleen_align/summary.json ] || ella-v prepare --data kathleen_only --out kathleen_align \
                --codec learned --codec-model "$BUNDLED" --num-proc 1
            case $run in phoneme) weight=0.5 ;; phoneme-light) weight=0.1 ;; *) weight=${run#phoneme-} ;; esac
            python3 -c "import sys; w = float(sys.argv[1]); assert 0 < w" "$weight" 2>/dev/null \
                || { echo "run $run: the phoneme loss weight must be a positive number" >&2; exit 2; }
            recipe "$run" phoneme_loss_weight=$weight; extra=(--alignments kathleen_align) ;;
        firstonly) recipe firstonly first_level_fraction=0.5 ;;
        first256) recipe first256 codec.first_codebook_size=256 ;;
        first1024) recipe first1024 codec.first_codebook_size=1024 ;;
        long) recipe long max_steps=7000 ;;
        bundled) codec=$BUNDLED ;;  # the embedded codec, measured alike (no training)
        *) echo "unknown run $run" >&2; exit 2 ;;
    esac
    out=codec_ablation/$run
    mkdir -p "$out"
    if [ "$run" != bundled ] && [ ! -f "$out/train/summary.json" ]; then
        ella-v train-codec --data $data --out "$out/train" --config "codec_ablation/configs/$run.json" "${extra[@]}" \
            --resume > "codec_ablation/$run.train.log" 2>&1
    fi
    # What the GAR has to learn: the first level's entropy given the aligned phoneme and its phoneme
    # purity, over Kathleen's training prompts encoded by this codec (a few minutes).
    if [ ! -f "$out/first_level.json" ]; then
        [ -f "$out/prepared/summary.json" ] || ella-v prepare --data kathleen_only --out "$out/prepared" --codec learned \
            --codec-model "$codec" --num-proc 1 > "codec_ablation/$run.prepare.log" 2>&1
        python3 -m ella_v_hf.evaluation.measure_codec --prepared "$out/prepared" --json > "$out/first_level.json.tmp" \
            && mv "$out/first_level.json.tmp" "$out/first_level.json"
    fi
    if [ "${MEASURE:-1}" = 1 ] && [ ! -f "$out/measure.json" ]; then  # MEASURE=0: the first level only
        python3 -m ella_v_hf.evaluation.measure_codec --codec "$codec" --data kathleen_heldout \
            --levels 1 2 4 8 --stages --quality --json > "$out/measure.json.tmp" 2> "codec_ablation/$run.measure.log" \
            && mv "$out/measure.json.tmp" "$out/measure.json" || echo "$run: measurement failed (see its log)" >&2
    fi
done
