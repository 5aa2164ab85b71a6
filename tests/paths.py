"""Paths to the real data beside the project (../shared/data) and the bundled slice."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGINT_SHARED_DATA", ROOT.parent / "shared" / "data"))
KUAIRAND_LOG = SHARED_DATA / "kuairand_pure" / "log_standard_4_25_to_4_30_pure.csv"
KUAIRAND_FIXTURE = SHARED_DATA / "fixtures" / "kuairand_pure_log_sample_2000.csv"
SEGMM_SAMPLE = SHARED_DATA / "segmm_sample" / "SegMM_inter_sample.csv"
BUNDLED_LOG = ROOT / "data" / "kuairand_pure" / "log_standard_4_25_to_4_30_pure.csv.gz"
