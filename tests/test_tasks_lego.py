"""LEGO generator, labels and chain positions (checked by an independent clause resolver),
the trainer's per-group accuracy, and the length-extrapolation report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lra_wavelet import configlib, tasks
from lra_wavelet.tasks import lego
from lra_wavelet.train import loop
from tests.conftest import REPO

OPTS = lego.GeneratorOptions(num_variables=7, train_supervised=3, num_train=40, num_val=10, num_test=30, seed=5)


def resolve(tokens: list[str]) -> dict[int, tuple[int, int]]:
  """Independent reading of one example: token position of each clause's variable ->
  (value +1/-1, chain position), by parsing ``x = s y ;`` clauses and following references."""
  clauses = {}
  for start in range(0, len(tokens), 5):
    if tokens[start] == "<pad>":
      break
    var, eq, sign, operand, semi = tokens[start:start + 5]
    assert (eq, semi) == ("=", ";") and sign in "+-"
    clauses[var] = (start, 1 if sign == "+" else -1, operand)

  def value_and_depth(var):
    _, sign, operand = clauses[var]
    if operand == "1":
      return sign, 0
    value, depth = value_and_depth(operand)
    return sign * value, depth + 1

  return {clauses[v][0]: value_and_depth(v) for v in clauses}


@pytest.mark.parametrize("split, supervised", [("train", 3), ("validation", 3), ("test", 7)])
def test_labels_and_chain_positions_match_a_resolver(split, supervised):
  arrays = lego.make_split(OPTS, split, length=40)
  assert arrays["inputs"].shape == (OPTS.num_test if split == "test" else 40 if split == "train" else 10, 40)
  for inputs, targets, groups in zip(arrays["inputs"], arrays["targets"], arrays["groups"]):
    tokens = [lego.VOCAB[i] for i in inputs]
    assert tokens[35:] == ["<pad>"] * 5
    truth = resolve(tokens)
    assert sorted(d for _, d in truth.values()) == list(range(7))
    for pos in range(40):
      if pos in truth:
        value, depth = truth[pos]
        assert groups[pos] == depth
        assert targets[pos] == ((1 if value > 0 else 0) if depth < supervised else -1)
      else:
        assert groups[pos] == -1 and targets[pos] == -1


def test_clauses_are_shuffled_and_values_balanced():
  arrays = lego.make_split(OPTS, "test", length=35)
  first_depth = arrays["groups"][:, 0]
  assert len(set(first_depth.tolist())) > 3  # the root clause is not always first
  labels = arrays["targets"][arrays["targets"] >= 0]
  assert 0.35 < labels.mean() < 0.65
  # Distinct variable names within a chain.
  names = arrays["inputs"][:, 0::5]
  assert all(len(set(row)) == 7 for row in names)


def test_generation_is_seeded_and_splits_differ():
  a = lego.make_split(OPTS, "train", 35)
  np.testing.assert_array_equal(a["inputs"], lego.make_split(OPTS, "train", 35)["inputs"])
  assert not np.array_equal(a["inputs"][:10], lego.make_split(OPTS, "validation", 35)["inputs"])


def test_length_too_short_is_a_clear_error():
  with pytest.raises(ValueError, match="raise max_len"):
    lego.make_split(OPTS, "train", 30)


def test_extrapolation_table_and_plot(tmp_path):
  accuracy = [1.0, 0.98, 0.9, 0.7, 0.6, 0.5, 0.55]
  config = configlib.load_config_file(f"{REPO / 'configs/lego.py'}:model=transformer,scale=tiny")
  with config.unlocked():
    config.data.update(num_variables=7, train_supervised=3)
  extra = lego.report({"test_accuracy_by_group": accuracy}, tmp_path, config)["lego"]
  rows = extra["accuracy_by_chain_position"]
  assert [r["chain_position"] for r in rows] == list(range(1, 8))
  assert [r["supervised_in_training"] for r in rows] == [True] * 3 + [False] * 4
  assert extra["in_distribution_accuracy"] == pytest.approx((1.0 + 0.98 + 0.9) / 3)
  assert extra["extrapolation_accuracy"] == pytest.approx((0.7 + 0.6 + 0.5 + 0.55) / 4)
  png = (tmp_path / lego.PLOT_FILE).read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
  assert lego.report({}, tmp_path, config) == {}


def test_training_reports_accuracy_per_chain_position(tmp_path):
  config = configlib.load_config_file(f"{REPO / 'configs/lego.py'}:model=transformer,scale=tiny")
  with config.unlocked():
    config.data.update(num_variables=6, train_supervised=3, num_train=128, num_val=32, num_test=48)
    config.model.update(num_layers=1, dim=16, num_heads=2, qkv_dim=16, mlp_dim=32)
    config.update(max_len=32, cache_dir=str(tmp_path / "cache"), batch_size=16, eval_batch_size=20,
                  num_train_steps=6, warmup_steps=1, log_every=3, eval_every=6, checkpoint_every=6, prefetch=0)
  results = loop.train_and_evaluate(config, tmp_path / "run")
  by_group = results["test_accuracy_by_group"]
  assert len(by_group) == 6
  # Every chain position has the same number of labels, so the overall test accuracy is the
  # mean of the per-position ones (an independent check of the bucketing and the padded batch).
  assert np.mean(by_group) == pytest.approx(results["test_accuracy"], abs=1e-6)
  saved = json.loads((tmp_path / "run" / "results.json").read_text())
  assert [r["chain_position"] for r in saved["lego"]["accuracy_by_chain_position"]] == list(range(1, 7))
  assert (tmp_path / "run" / lego.PLOT_FILE).is_file()
  spec = lego.spec(config)
  assert (spec.kind, spec.vocab_size, spec.num_classes) == ("token", 32, 2)
  stats = tasks.statistics(lego.load("test", config), spec)
  assert sum(stats["class_counts"]) == 48 * 6  # every variable of every test chain is labelled
