#!/usr/bin/env bash
# Neural learned baselines din-slot and sasrec (issue 13): every split and seed of the
# "Neural baselines" section of docs/results/learned-baselines.md.
# Usage: bash docs/results/learned_neural.sh SPLIT [SEEDS...]   (from the project root)
# Writes RESULTS/SPLIT-sSEED/learned-neural.{json,parquet,txt} (RESULTS defaults to /work/results).
set -euo pipefail
LEARNERS=din-slot,sasrec NAME=learned-neural exec bash "$(dirname "$0")/learned_baselines.sh" "$@"
