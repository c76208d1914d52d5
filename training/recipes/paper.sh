#!/usr/bin/env bash
# The paper's recipe: a LibriTTS-layout corpus -> EnCodec 24 kHz codes and forced alignments ->
# ELLA-V GAR and NAR at the paper's size (the `base` preset: 12 layers x 1024) in bf16, data-parallel
# over the GPUs -> one assembled checkpoint -> evaluation.
#
#   bash training/recipes/paper.sh RUNS_DIR --data LIBRITTS_DIR [--gpus N] [--layout ella-v|vall-e]
#   bash training/recipes/paper.sh RUNS_DIR --dry-run
#
# The real run uses facebook/encodec_24khz (from the Hub) and `accelerate launch --multi_gpu` (DDP;
# training/configs/accelerate-ddp.yaml); every step resumes when run again. --dry-run runs the same
# chain here, end to end, on a tiny slice: a 16-utterance flite corpus, a tiny random EnCodec (the
# real loading code, `--codec encodec --codec-model DIR`), the base preset for 2 steps per stage on
# the CPU with two processes (torchrun, the same DDP code path; bf16 where the CPU has bf16
# instructions), assembly and a 2-item
# evaluation. Both end by printing the projected GPU-hours of the recipe's schedule from the
# measured FLOPs of one step (python -m ella_v_hf.evaluation.project_training).
set -euo pipefail
RUNS=${1:?usage: paper.sh RUNS_DIR (--data LIBRITTS_DIR [--gpus N] | --dry-run)}
shift
DATA="" GPUS=8 LAYOUT=ella-v DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA=$2; shift 2 ;;
        --gpus) GPUS=$2; shift 2 ;;
        --layout) LAYOUT=$2; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        *) echo "paper.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$RUNS"
RUNS=$(realpath "$RUNS")
CONFIGS=$(python3 -c 'import ella_v_hf.training as t, os; print(os.path.join(os.path.dirname(t.__file__), "configs"))')
CONFIG="$CONFIGS/base-$LAYOUT.json"
RECIPE=$CONFIG  # the schedule the projection is for (the dry run trains on smaller batches)
cd "$RUNS"

if [ "$DRY" = 1 ]; then
    # A tiny slice and a tiny random EnCodec (the paper's codec class and loading path, random weights).
    [ -f slice/metadata.csv ] || ella-v make-demo-corpus --out slice --n 16 --voices slt rms
    python3 - <<'EOF'
from pathlib import Path
from transformers import EncodecConfig
from ella_v_hf.modeling import EllaVEncodecConfig, EllaVEncodecModel
if not Path("encodec-tiny/config.json").is_file():
    tiny = EncodecConfig(hidden_size=16, num_filters=4, upsampling_ratios=[8, 5, 4, 2], codebook_size=64, codebook_dim=16,
                         target_bandwidths=[1.5, 3.0, 6.0], sampling_rate=24000, num_lstm_layers=1)
    config = tiny.to_dict(); config.pop("model_type", None)
    EllaVEncodecModel(EllaVEncodecConfig(**config, bandwidth=6.0)).save_pretrained("encodec-tiny")
EOF
    # The base preset as it is, on CPU-sized batches (a real batch of 24,000 tokens takes minutes on a
    # CPU), in float32 unless the CPU has bf16 instructions (elsewhere bf16 is emulated, many times slower).
    python3 - "$CONFIG" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
bf16 = any(flag in open("/proc/cpuinfo").read().split() for flag in ("avx512_bf16", "amx_bf16"))
config.update(max_tokens_per_batch=400, warmup_steps=1, save_every=1, eval_every=1000, eval_fraction=0.1,
              mixed_precision="bf16" if bf16 else "no")
json.dump(config, open("dry-run.json", "w"), indent=1)
EOF
    CONFIG=$RUNS/dry-run.json
    CORPUS=slice CODEC=(--codec encodec --codec-model encodec-tiny)
    STEPS=(--max-steps 2)
    LAUNCH=(python3 -m torch.distributed.run --nproc_per_node 2 --master_port "${MASTER_PORT:-29511}")
    EVAL=(--eval slice --limit 2 --prompt-mode none --sweep greedy --sim none)
else
    [ -n "$DATA" ] || { echo "paper.sh: give --data LIBRITTS_DIR (or --dry-run)" >&2; exit 2; }
    CORPUS=$DATA CODEC=(--codec encodec)
    STEPS=()
    LAUNCH=(accelerate launch --config_file "$CONFIGS/accelerate-ddp.yaml" --num_processes "$GPUS")
    EVAL=(--eval "$DATA" --limit 500 --prompt-mode continuation --sweep "greedy;top_p=0.9" --seeds 3)
fi

# Codes and alignments (the built-in aligner, trained on the corpus; --aligner textgrid for MFA's).
[ -f prepared/summary.json ] || ella-v prepare --data "$CORPUS" --out prepared "${CODEC[@]}" --num-proc "$(nproc)"
# The GAR and the NAR, each data-parallel; --resume continues a run that was stopped.
for stage in gar nar; do
    resume=(); [ -d "train-$stage/checkpoints" ] && resume=(--resume)
    "${LAUNCH[@]}" -m ella_v_hf.cli train --config "$CONFIG" --data prepared --out "train-$stage" --stage "$stage" \
        "${STEPS[@]}" "${resume[@]}"
done
ella-v assemble --gar train-gar/model --nar train-nar/model --out "$LAYOUT-base"
ella-v evaluate --model "$LAYOUT-base" "${EVAL[@]}" --out "eval/$LAYOUT-base.json" --overwrite
python3 -m ella_v_hf.evaluation.project_training --config "$RECIPE" --processes "$GPUS"
