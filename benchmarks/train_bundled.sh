#!/usr/bin/env bash
# Train the bundled models on the four non-held-out shared scans (chest1mm_lidc0314 and
# limb3mm_sts002 stay held out). Usage: benchmarks/train_bundled.sh FAMILY SCALE MINUTES OUT
#   FAMILY: profile (thick slices; benchmarks/profile_model.toml) or default (thin slices;
#   benchmarks/default_model.toml: the training scans are thick, so the thin-slice recipe is stated)
set -euo pipefail
family=$1 scale=$2 minutes=$3 out=$4
S=$(cd "$(dirname "$0")/../.." && pwd)/shared/data
config=(--config "$(dirname "$0")/${family}_model.toml")
OMP_NUM_THREADS=1 thinslice -q train -i "$S/abd5mm_crlm1004.nii.gz" -i "$S/aorta1.5mm_totalseg.nii.gz" \
    -i "$S/body3mm_totalseg.nii.gz" -i "$S/limb3mm_sts001.nii.gz" \
    -o "$out" --scale "$scale" --minutes "$minutes" --seed 0 --device cpu --overwrite "${config[@]}"
