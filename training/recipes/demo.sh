#!/usr/bin/env bash
# The recipe of the bundled demo checkpoints (ella_v_hf/demo_models/{ella-v,vall-e}-demo), on CPU.
#
#   [CODEC_CONFIG=training/configs/CODEC.json] bash training/recipes/demo.sh RUNS_DIR [SHARED_DATA_DIR]
#
# 1. a 1,000-utterance flite corpus (8 voices) + the Kathleen corpus (CC0), 12 % of Kathleen's
#    prompts held out (no held-out sentence is trained on in any voice);
# 2. the bundled learned codec (ella_v_hf/pretrained/codec: 50 Hz, 8 codebooks, the first of 128
#    phoneme-distilled codes), which the bundled demos embed; or, with CODEC_CONFIG=RECIPE.json, a
#    codec trained first on the same training corpus (every voice; alignments from a prepare with
#    the bundled codec when the recipe distils phonemes). The plain recipe (codec-plain.json)
#    resynthesises better but its first level does not follow the phonemes, and a GAR trained on it
#    spoke far worse (docs/experiments.md, 2026-12-07); codec-phoneme-light.json (distillation at
#    0.1), trained on this corpus, resynthesises held-out Kathleen at 1.20 x ground truth (the bundled
#    codec 1.72 x; docs/experiments.md, 2026-12-07), and its first level has
#    phoneme purity 0.67 against the same alignments where the bundled codec's has 0.95; an ELLA-V
#    demo trained on it spoke worse than the bundled one (greedy WER 66.5 against 37.6 % on 40
#    held-out utterances): its GAR's first level alone decodes at 54.0 % (the bundled 40.9 %), and
#    its NAR's seven levels raise that to 66.5 % where the bundled NAR's lower it.
#    Then the combined corpus is prepared with the codec (prepare fits its aligner
#    there). Use one RUNS_DIR per codec: every later step reuses what it finds there;
# 3. four runs, one CPU thread each, same data, steps and seed for both GARs:
#    ELLA-V GAR (stage gar), VALL-E GAR (stage gar): 1,000 steps, dropout 0.1 (without dropout both
#    GARs overfit the 1.4 h corpus after ~750 steps), half the rows continuing another sentence of
#    their speaker (gar_prompt_pairs 0.5: what a voice prompt asks of the GAR); the ELLA-V GAR also
#    loses all its phonemes on 15 % of its rows (gar_text_dropout 0.15: the text-unconditional branch
#    classifier-free guidance needs; not in the paper, and VALL-E is trained without it); two 3-layer NARs
#    (stage nar, 3,000 steps): VALL-E's, and ELLA-V's, which also reads each frame's aligned phoneme
#    (nar_frame_phonemes; ELLA-V's GAR sequence gives that alignment at inference, VALL-E's does not);
# 4. assemble both demos in fp16 (the ELLA-V one with eop_quantile 0.5 and guidance_scale 2 as its
#    decoding defaults);
# 5. build the unseen-Harvard evaluation set.
# Steps 1-2 take ~3 min (plus a codec's training, ~14 min on two threads), step 3 ~3 h on 2 cores (batches of <= 3,000 tokens
# before prompt pairs join rows; the GARs 6-8 s a step side by side, ~2 h, the NARs ~1.1 s a step,
# ~55 min): two runs at a time, one thread each, the next starting as soon as one ends. Every step
# resumes (--resume) when run again.
set -euo pipefail
RUNS=${1:?usage: demo.sh RUNS_DIR [SHARED_DATA_DIR]}
SHARED=$(realpath "${2:-../shared/data}")
CODEC_RECIPE=${CODEC_CONFIG:+$(realpath "$CODEC_CONFIG")}
HERE=$(cd "$(dirname "$0")/.." && pwd)  # training/
mkdir -p "$RUNS" && cd "$RUNS"

[ -f demo/metadata.csv ] || ella-v make-demo-corpus --out demo --n 1000 --data-dir "$SHARED"
[ -f combined/metadata.csv ] || python3 -m ella_v_hf.training.combine_corpora --out combined \
    --corpus "$SHARED/kathleen" --corpus demo --hold-out "$SHARED/kathleen=0.12" --held-out-dir kathleen_heldout
CODEC=$(python3 -c "from ella_v_hf.processing.prepare import DEFAULT_CODEC_DIR; print(DEFAULT_CODEC_DIR)")
if [ -n "$CODEC_RECIPE" ]; then
    name=$(basename "$CODEC_RECIPE" .json)
    # the codec trains on the demos' own training corpus (every voice; no held-out prompt)
    extra=()
    if python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("phoneme_loss_weight", 0) <= 0)' "$CODEC_RECIPE"; then
        [ -f combined_align/summary.json ] || OMP_NUM_THREADS=2 ella-v prepare --data combined --out combined_align \
            --codec learned --codec-model "$CODEC" --num-proc 2
        extra=(--alignments combined_align)
    fi
    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 ella-v train-codec --data combined --out "$name" \
        --config "$CODEC_RECIPE" "${extra[@]}" --resume
    CODEC=$name/model
fi
[ -f combined_prep/summary.json ] || OMP_NUM_THREADS=2 ella-v prepare --data combined --out combined_prep \
    --codec learned --codec-model "$CODEC" --num-proc 2

for run in ella-v vall-e nar-aligned nar; do  # the two GARs first; a NAR takes the first free core
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ella-v train --config "$HERE/configs/demo-$run.json" \
        --data combined_prep --out "demo_train/$run" --resume > "demo_train-$run.log" 2>&1 &
done
wait

# --no-remote-code: the bundled demos load through the installed classes (`ella-v push` writes the code).
# The ELLA-V demo's decoding defaults: each phoneme ends at the median of the GAR's duration
# distribution (eop_quantile 0.5; VALL-E has no EOP), and classifier-free guidance on the text with
# weight 2 (see the README's Synthesis section). Both demos decode a sampled frame's first level
# from its expected vector under the distribution the code was drawn from (first_level_decoding).
# The model cards' one source is the bundled demos' README.md.
CARDS=$(python3 -c 'import ella_v_hf, os; print(os.path.join(os.path.dirname(ella_v_hf.__file__), "demo_models"))')
ella-v assemble --gar demo_train/ella-v/model --nar demo_train/nar-aligned/model --out ella-v-demo --no-remote-code \
    --card "$CARDS/ella-v-demo/README.md" --generation eop_quantile=0.5 --generation guidance_scale=2 --generation first_level_decoding=expected
ella-v assemble --gar demo_train/vall-e/model --nar demo_train/nar/model --out vall-e-demo --no-remote-code \
    --card "$CARDS/vall-e-demo/README.md" --generation first_level_decoding=expected
python3 -m ella_v_hf.evaluation.eval_sets --out harvard50 --n 50 --sentences "$SHARED/harvard-sentences.txt" \
    --exclude combined --exclude kathleen_heldout --voice rms
