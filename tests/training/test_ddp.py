"""Training under torchrun: two CPU processes with DistributedDataParallel (gloo)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segint.data import load_table
from segint.splits import TRAIN, assign_split, history_index
from tests.paths import ROOT
from tests.training.conftest import TINY
from training.checkpoint import load_model, load_run_config
from training.data import InteractionDataset
from training.inference import predict_logits


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_a_loadable_checkpoint(
    log_csv: Path, tmp_path: Path
) -> None:
    """`torchrun --nproc_per_node 2 -m segint.cli train` shards each epoch over 2 ranks, rank 0
    writes a run directory that loads and scores."""
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "segint.cli", "train", "--data", str(log_csv), "--format", "canonical",
        "--config", str(TINY), "--out", str(out), "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best validation NDCG@5") == 1  # only rank 0 reports

    table = load_table(log_csv, "canonical")
    cfg = load_run_config(out)
    split = assign_split(table, cfg.data.split, cfg.data.seed)
    n_train = int((split == TRAIN).sum())
    # Each rank sees ceil(n_train / 2) rows per epoch, in batches of 13.
    steps_per_epoch = math.ceil(math.ceil(n_train / 2) / cfg.optim.batch_size)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == cfg.optim.max_epochs * steps_per_epoch
    model, model_cfg, users, videos = load_model(out)
    data = InteractionDataset(
        table, history_index(table, cfg.data.history_len), np.flatnonzero(split == TRAIN),
        users, videos, model_cfg.s_max,
    )  # fmt: skip
    logits = predict_logits(model, data, 64, "cpu")
    assert logits.shape == (n_train, model_cfg.s_max) and np.isfinite(logits).all()
    # The checkpoint is a plain state_dict (no DDP "module." prefix).
    state = torch.load(out / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
