"""LEGO (Zhang et al. 2022, "Unveiling Transformers with LEGO"): follow a chain of assignments.

An example is a chain of ``n`` variables written as clauses ``a = + 1 ; b = - a ; c = + b ;
...`` (the first clause assigns +1 or -1, every later one assigns + or - the previous
variable), with the clauses shuffled. The model labels every clause's variable with its
value (class 1 = +1, class 0 = -1): a token-level task whose labels sit on the variable
token that opens each clause (``targets`` int32[M, L], -1 elsewhere).

Length extrapolation, as in the paper: training supervises only the first
``train_supervised`` variables of each chain (default 6 of 12) and the test split all ``n``;
the validation split is supervised like training, so checkpoint selection never sees the
positions that measure extrapolation. Every split also carries ``groups`` int32[M, L], the
chain position (0 .. n-1) of each labelled token (-1 elsewhere); the trainer's evaluation
reports accuracy per group, and ``report`` turns the test accuracies into the extrapolation
table in results.json and a plot ``lego_extrapolation.png`` in the workdir.

Data is generated in memory (vectorised NumPy, seeded) and cached as arrays; there is no
official file format.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from lra_wavelet import tasks

VARIABLES = tuple("abcdefghijklmnopqrstuvwxyz")
OPERATORS = ("=", "+", "-", "1", ";")
# id 0 is padding; the order below is part of the data format and must never change.
VOCAB = ("<pad>",) + VARIABLES + OPERATORS
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
CLAUSE_LEN = 5  # variable, '=', sign, operand, ';'
NUM_CLASSES = 2  # 0: value -1, 1: value +1
PLOT_FILE = "lego_extrapolation.png"


@dataclasses.dataclass(frozen=True)
class GeneratorOptions:
  num_variables: int = 12
  train_supervised: int = 6   # chain positions labelled in train and validation
  num_train: int = 50_000
  num_val: int = 2_000
  num_test: int = 2_000
  seed: int = 0

  def __post_init__(self):
    if not 1 <= self.num_variables <= len(VARIABLES):
      raise ValueError(f"data.num_variables must be 1..{len(VARIABLES)}, got {self.num_variables}")
    if not 1 <= self.train_supervised <= self.num_variables:
      raise ValueError(f"data.train_supervised must be 1..num_variables={self.num_variables}, "
                       f"got {self.train_supervised}")


def generate_chains(num: int, num_variables: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Chains in chain order: ``names`` int32[num, n] (token ids), ``signs`` int32[num, n] (+-1),
  ``values`` int32[num, n] (+-1: values[i] = signs[i] * values[i-1], values[0] = signs[0])."""
  names = np.argsort(rng.random((num, len(VARIABLES))), axis=1)[:, :num_variables] + TOKEN_ID["a"]
  signs = np.where(rng.random((num, num_variables)) < 0.5, -1, 1)
  return {"names": names.astype(np.int32), "signs": signs.astype(np.int32),
          "values": np.cumprod(signs, axis=1).astype(np.int32)}


def encode(chains: dict[str, np.ndarray], order: np.ndarray, supervised: int, length: int
           ) -> dict[str, np.ndarray]:
  """Token arrays of chains written in clause order ``order`` int[num, n] (chain indices).

  Returns inputs int32[num, length], targets int32[num, length] (class at each clause's
  variable token if its chain position < ``supervised``, else -1) and groups int32[num,
  length] (chain position at each clause's variable token, -1 elsewhere).
  """
  names, signs, values = chains["names"], chains["signs"], chains["values"]
  num, n = names.shape
  if length < n * CLAUSE_LEN:
    raise ValueError(f"max_len={length} is shorter than {n} clauses x {CLAUSE_LEN} tokens; raise max_len")
  operand = np.concatenate([np.full((num, 1), TOKEN_ID["1"]), names[:, :-1]], axis=1)
  clauses = np.stack([names, np.full_like(names, TOKEN_ID["="]),
                      np.where(signs > 0, TOKEN_ID["+"], TOKEN_ID["-"]), operand,
                      np.full_like(names, TOKEN_ID[";"])], axis=-1)  # [num, n, 5] in chain order
  rows = np.arange(num)[:, None]
  inputs = np.zeros((num, length), np.int32)
  inputs[:, :n * CLAUSE_LEN] = clauses[rows, order].reshape(num, -1)
  targets = np.full((num, length), -1, np.int32)
  groups = np.full((num, length), -1, np.int32)
  label = (values[rows, order] > 0).astype(np.int32)
  targets[:, 0:n * CLAUSE_LEN:CLAUSE_LEN] = np.where(order < supervised, label, -1)
  groups[:, 0:n * CLAUSE_LEN:CLAUSE_LEN] = order
  return {"inputs": inputs, "targets": targets, "groups": groups}


def make_split(opts: GeneratorOptions, split: str, length: int) -> dict[str, np.ndarray]:
  """One split, generated from its own seed stream (splits are independent draws)."""
  num = {"train": opts.num_train, "validation": opts.num_val, "test": opts.num_test}[split]
  rng = np.random.default_rng([opts.seed, tasks.SPLITS.index(split)])
  chains = generate_chains(num, opts.num_variables, rng)
  order = np.argsort(rng.random((num, opts.num_variables)), axis=1)  # shuffled clauses
  supervised = opts.num_variables if split == "test" else opts.train_supervised
  return encode(chains, order, supervised, length)


def generator_options(config) -> GeneratorOptions:
  d = config.data
  return GeneratorOptions(num_variables=d.num_variables, train_supervised=d.train_supervised,
                          num_train=d.num_train, num_val=d.num_val, num_test=d.num_test, seed=d.seed)


def spec(config) -> tasks.TaskSpec:
  opts = generator_options(config)
  if config.max_len < opts.num_variables * CLAUSE_LEN:
    raise ValueError(f"max_len={config.max_len} is shorter than {opts.num_variables} clauses x "
                     f"{CLAUSE_LEN} tokens; raise max_len")
  return tasks.TaskSpec(name="lego", vocab_size=len(VOCAB), max_len=config.max_len,
                        num_classes=NUM_CLASSES, kind="token")


def load(split: str, config) -> dict[str, np.ndarray]:
  """inputs, targets, groups int32[M, max_len] of ``split`` (see the module docstring)."""
  if split not in tasks.SPLITS:
    raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(tasks.SPLITS)}")
  opts = generator_options(config)
  key = tasks.fingerprint(dataclasses.asdict(opts), config.max_len, VOCAB)
  path = tasks.cache_root(config) / "lego" / f"{split}-{key}.npz"
  return tasks.cached_arrays(path, lambda: make_split(opts, split, config.max_len))


def extrapolation_table(accuracy_by_position: list[float], train_supervised: int) -> dict[str, Any]:
  """Accuracy per chain position with the trained/extrapolated split and their means."""
  acc = [float(a) for a in accuracy_by_position]
  seen, unseen = acc[:train_supervised], acc[train_supervised:]
  return {
      "accuracy_by_chain_position": [
          {"chain_position": i + 1, "accuracy": a, "supervised_in_training": i < train_supervised}
          for i, a in enumerate(acc)],
      "in_distribution_accuracy": float(np.mean(seen)) if seen else None,
      "extrapolation_accuracy": float(np.mean(unseen)) if unseen else None,
  }


def plot_extrapolation(accuracy_by_position: list[float], train_supervised: int, path: Path,
                       title: str) -> None:
  """Accuracy against chain position, the trained range shaded, chance at 0.5."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  positions = np.arange(1, len(accuracy_by_position) + 1)
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.axvspan(0.5, train_supervised + 0.5, color="tab:green", alpha=0.12, label="supervised in training")
  ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
  ax.plot(positions, accuracy_by_position, marker="o", color="tab:blue", label="test accuracy")
  ax.set(xlabel="position in the chain", ylabel="accuracy", ylim=(0.0, 1.02), xticks=positions, title=title)
  ax.legend(loc="lower left", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def report(results: dict[str, Any], workdir, config) -> dict[str, Any]:
  """The length-extrapolation table (results.json key ``lego``) and its plot in ``workdir``."""
  accuracy = results.get("test_accuracy_by_group")
  if not accuracy:
    return {}
  k = config.data.train_supervised
  table = extrapolation_table(accuracy, k)
  title = f"LEGO {config.model_preset} ({config.scale}): trained on {k} of {len(accuracy)}"
  plot_extrapolation(accuracy, k, Path(workdir) / PLOT_FILE, title)
  return {"lego": {"num_variables": config.data.num_variables, "train_supervised": k, **table,
                   "plot": PLOT_FILE}}
