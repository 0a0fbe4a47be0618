#!/usr/bin/env bash
# The single-scan use, exactly as a user runs it: one thick scan, no training set but itself.
# limb3mm_sts002 (3.27 mm) with every 2nd slice removed is the "observed" 6.54 mm scan;
# thinslice trains on it alone for 3 CPU minutes, and `thinslice evaluate` (which removes
# the same slices) compares the model's synthesized slices with the removed originals.
# Usage: bash benchmarks/single_scan_cli.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-3}
scan=../shared/data/limb3mm_sts002.nii.gz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -c "
import thinslice
from thinslice.evaluation.degrade import decimate
thinslice.save(decimate(thinslice.load('$scan'), 2), '$work/observed.nii.gz')"
.venv/bin/thinslice train -i "$work/observed.nii.gz" -o "$work/m.pt" --scale 2 --minutes "$minutes" --seed 0 --device cpu
.venv/bin/thinslice upsample -i "$work/observed.nii.gz" -o "$work/thin.nii.gz" --model "$work/m.pt"
.venv/bin/thinslice evaluate -i "$scan" --scale 2 --methods model,cubic,linear --model "$work/m.pt"
