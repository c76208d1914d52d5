#!/usr/bin/env bash
# The recipe of the bundled demo checkpoints (ella_v_hf/demo_models/{ella-v,vall-e}-demo), on CPU.
#
#   bash training/recipes/demo.sh RUNS_DIR [SHARED_DATA_DIR]
#
# 1. a 1,000-utterance flite corpus (8 voices) + the Kathleen corpus (CC0), 10 % of Kathleen's
#    prompts held out (no held-out sentence is trained on in any voice);
# 2. prepare with the embedded mel codec (8 x 256 codes, 50 Hz) and the built-in aligner;
# 3. four runs, one CPU thread each, same data, steps and seed for both GARs:
#    ELLA-V GAR (stage gar), VALL-E GAR (stage gar): 1,000 steps, dropout 0.1 (without dropout both
#    GARs overfit the 1.4 h corpus after ~750 steps); two 3-layer NARs (stage nar, 3,000 steps):
#    VALL-E's, and ELLA-V's, which also reads each frame's aligned phoneme (nar_frame_phonemes;
#    ELLA-V's GAR sequence gives that alignment at inference, VALL-E's does not);
# 4. assemble both demos in fp16; 5. build the unseen-Harvard evaluation set.
# Steps 1-2 take ~5 min, step 3 ~90 min on 2 cores (batches of <= 3,000 tokens).
set -euo pipefail
RUNS=${1:?usage: demo.sh RUNS_DIR [SHARED_DATA_DIR]}
SHARED=$(realpath "${2:-../shared/data}")
HERE=$(cd "$(dirname "$0")/.." && pwd)  # training/
mkdir -p "$RUNS" && cd "$RUNS"

[ -f demo/metadata.csv ] || ella-v make-demo-corpus --out demo --n 1000 --data-dir "$SHARED"
[ -f combined/metadata.csv ] || python3 -m ella_v_hf.training.combine_corpora --out combined \
    --corpus "$SHARED/kathleen" --corpus demo --hold-out "$SHARED/kathleen=0.1" --held-out-dir kathleen_heldout
ella-v prepare --data combined --out combined_prep --codec mel

for run in ella-v vall-e nar nar-aligned; do
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ella-v train --config "$HERE/configs/demo-$run.json" \
        --data combined_prep --out "demo_train/$run" --resume > "demo_train-$run.log" 2>&1 &
done
wait

# --no-remote-code: the bundled demos load through the installed classes (`ella-v push` writes the code).
ella-v assemble --gar demo_train/ella-v/model --nar demo_train/nar-aligned/model --out ella-v-demo --no-remote-code
ella-v assemble --gar demo_train/vall-e/model --nar demo_train/nar/model --out vall-e-demo --no-remote-code
python3 -m ella_v_hf.evaluation.eval_sets --out harvard50 --n 50 --sentences "$SHARED/harvard-sentences.txt" \
    --exclude combined --exclude kathleen_heldout --voice rms
