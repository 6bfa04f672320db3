"""Input pipeline: batches are a pure function of (seed, step), so runs and resumes agree."""

from __future__ import annotations

import numpy as np

from lra_wavelet import data

ARRAYS = {"inputs": np.arange(50)[:, None] * np.ones((1, 4), np.int32), "targets": np.arange(50)}


def batches(seed, start=0, steps=20, prefetch=2):
  return [b["targets"].tolist() for b in data.train_batches(
      ARRAYS, batch_size=8, seed=seed, start_step=start, num_steps=steps, prefetch=prefetch)]


def test_same_seed_same_batches():
  assert batches(0) == batches(0)
  assert batches(0) != batches(1)


def test_resume_reads_the_same_batches():
  assert batches(0, start=7) == batches(0)[7:]
  assert batches(0, start=7, prefetch=0) == batches(0)[7:]


def test_each_epoch_is_a_permutation_and_reshuffled():
  flat = sum(batches(0, steps=25), [])  # 200 examples = 4 epochs of 50
  epochs = [flat[i * 50:(i + 1) * 50] for i in range(4)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(50))
  assert epochs[0] != epochs[1]


def test_eval_batches_cover_split_once():
  seen, weight = [], 0.0
  for b in data.eval_batches(ARRAYS, batch_size=16):
    assert b["inputs"].shape == (16, 4)
    seen.extend(b["targets"][b["weights"] > 0].tolist())
    weight += b["weights"].sum()
  assert seen == list(range(50)) and weight == 50
