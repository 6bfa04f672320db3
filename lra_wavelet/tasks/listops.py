"""ListOps (Nangia & Bowman 2018; LRA, Tay et al. 2021): evaluate nested list operations.

An example is a bracketed expression such as ``( ( ( [MAX 2 ) 9 ) ] )`` over the operators
MIN, MAX, MED (integer median) and SM (sum mod 10) on digits; the target is its value 0-9.

* ``generate``: a seeded generator with the LRA grammar (the root is at depth 1; below ``max_depth`` a
  node is a leaf with probability 0.75, else an operator with 2..max_args arguments; keep examples with
  min_length < length < max_length tokens; de-duplicated) writing the official layout
  ``basic_{train,val,test}.tsv`` with header ``Source\\tTarget``.
* ``read_tsv``: the reader for that layout (LRA release ``listops-1000/``), with errors that
  name file and line.
* A fixed vocabulary (``VOCAB``), never built from set order, so ids are identical in every
  process; tokenised arrays cached next to the data.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import statistics as pystats
import tempfile
from pathlib import Path

import numpy as np
from absl import logging

from lra_wavelet import tasks

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
CLOSE = "]"
# id 0 is padding; the order below is part of the data format and must never change.
VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + OPERATORS + (CLOSE,)
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
NUM_CLASSES = 10
SPLIT_FILES = {"train": "basic_train.tsv", "validation": "basic_val.tsv", "test": "basic_test.tsv"}
HEADER = ("Source", "Target")
DOWNLOAD_HELP = (
    "ListOps comes with the LRA release: download "
    "https://storage.googleapis.com/long-range-arena/lra_release.gz, unpack it "
    "(tar xzf lra_release.gz) and pass --config.data_dir=.../lra_release/listops-1000, a folder "
    "holding basic_train.tsv, basic_val.tsv and basic_test.tsv (header 'Source<TAB>Target'); "
    "or leave data_dir empty to generate ListOps offline")


@dataclasses.dataclass(frozen=True)
class GeneratorOptions:
  """The LRA generator's knobs (its defaults: 96k/2k/2k, lengths 500-2000, depth 10, 10 args)."""
  num_train: int = 96_000
  num_val: int = 2_000
  num_test: int = 2_000
  min_length: int = 500
  max_length: int = 2000
  max_depth: int = 10
  max_args: int = 10
  seed: int = 0


def _apply(op: str, values: list[int]) -> int:
  if op == "[MIN":
    return min(values)
  if op == "[MAX":
    return max(values)
  if op == "[MED":
    return int(pystats.median(values))
  return sum(values) % 10


class _TooLong(Exception):
  pass


def _sample_tree(rng: random.Random, opts: GeneratorOptions) -> tuple[str, int, int]:
  """One random expression: (source string, value, token count). Raises _TooLong early."""
  length = 0

  def node(depth: int) -> tuple[str, int]:
    nonlocal length
    if depth >= opts.max_depth or rng.random() > 0.25:
      digit = rng.randrange(10)
      length += 1
      return str(digit), digit
    num_args = rng.randint(2, opts.max_args)
    length += 2  # operator and closing bracket
    children = [node(depth + 1) for _ in range(num_args)]
    if length >= opts.max_length:
      raise _TooLong
    op = rng.choice(OPERATORS)
    # Left-nested pairs as in the LRA files: ( ( ( [OP a ) b ) ] ).
    text = f"{op} {children[0][0]}"
    for child_text, _ in children[1:]:
      text = f"( {text} ) {child_text}"
    text = f"( ( {text} ) {CLOSE} )"
    return text, _apply(op, [v for _, v in children])

  source, value = node(1)  # the LRA generator starts its trees at depth 1
  return source, value, length


def generate_examples(opts: GeneratorOptions) -> list[tuple[str, int]]:
  """De-duplicated (source, target) pairs in generation order, enough for all three splits."""
  rng = random.Random(opts.seed)
  wanted = opts.num_train + opts.num_val + opts.num_test
  seen: set[str] = set()
  examples: list[tuple[str, int]] = []
  while len(examples) < wanted:
    try:
      source, value, length = _sample_tree(rng, opts)
    except _TooLong:
      continue
    if opts.min_length < length < opts.max_length and source not in seen:
      seen.add(source)
      examples.append((source, value))
  return examples


def write_tsv(path: Path, examples: list[tuple[str, int]]) -> None:
  with open(path, "w") as f:
    f.write("\t".join(HEADER) + "\n")
    for source, target in examples:
      f.write(f"{source}\t{target}\n")


def generate(folder: Path, opts: GeneratorOptions) -> Path:
  """Write basic_{train,val,test}.tsv into ``folder`` (atomically: all or nothing)."""
  examples = generate_examples(opts)
  folder.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
  bounds = {"train": (0, opts.num_train),
            "validation": (opts.num_train, opts.num_train + opts.num_val),
            "test": (opts.num_train + opts.num_val, len(examples))}
  for split, (lo, hi) in bounds.items():
    write_tsv(tmp / SPLIT_FILES[split], examples[lo:hi])
  try:
    os.replace(tmp, folder)
  except OSError:  # another process finished first
    shutil.rmtree(tmp, ignore_errors=True)
  return folder


def tokenize(source: str) -> list[int] | None:
  """Source expression -> token ids (parentheses dropped), or None if a token is unknown."""
  ids = []
  for tok in source.split():
    if tok in ("(", ")"):
      continue
    if tok not in TOKEN_ID or tok == "<pad>":
      return None
    ids.append(TOKEN_ID[tok])
  return ids


def read_tsv(path: Path) -> tuple[list[list[int]], list[int]]:
  """Read one split file: token id lists and targets. Malformed lines name file and line."""
  sequences, targets = [], []
  with open(path, encoding="utf-8") as f:
    header = f.readline().rstrip("\r\n").split("\t")
    if tuple(h.strip() for h in header) != HEADER:
      raise tasks.DataFormatError(
          f"{path}:1: expected the header 'Source<TAB>Target', found {header!r}; is this a ListOps TSV file?")
    for lineno, line in enumerate(f, start=2):
      line = line.rstrip("\r\n")
      if not line.strip():
        continue
      fields = line.split("\t")
      if len(fields) != 2:
        raise tasks.DataFormatError(
            f"{path}:{lineno}: expected 2 tab-separated fields (Source, Target), found {len(fields)}")
      source, target = fields
      ids = tokenize(source)
      if ids is None or not ids:
        bad = [t for t in source.split() if t not in TOKEN_ID and t not in ("(", ")")]
        raise tasks.DataFormatError(
            f"{path}:{lineno}: unknown ListOps token(s) {bad[:5]}; valid tokens: {' '.join(VOCAB[1:])} ( )")
      try:
        label = int(target)
      except ValueError:
        label = -1
      if not 0 <= label < NUM_CLASSES:
        raise tasks.DataFormatError(f"{path}:{lineno}: target {target!r} is not a digit 0-9")
      sequences.append(ids)
      targets.append(label)
  return sequences, targets


def generator_options(config) -> GeneratorOptions:
  d = config.data
  return GeneratorOptions(num_train=d.num_train, num_val=d.num_val, num_test=d.num_test,
                          min_length=d.min_length, max_length=d.max_length,
                          max_depth=d.max_depth, max_args=d.max_args, seed=d.seed)


def data_folder(config) -> Path:
  """The folder with the three TSV files: ``data_dir``, or generated data in the cache."""
  if config.data_dir:
    folder = Path(config.data_dir).expanduser()
    missing = [name for name in SPLIT_FILES.values() if not (folder / name).is_file()]
    if missing:
      raise tasks.MissingDataError(
          f"ListOps data not found: {folder} lacks {', '.join(missing)}. {DOWNLOAD_HELP}.")
    return folder
  opts = generator_options(config)
  folder = tasks.cache_root(config) / "listops" / f"generated-{tasks.fingerprint(dataclasses.asdict(opts))}"
  if not all((folder / name).is_file() for name in SPLIT_FILES.values()):
    logging.info("Generating ListOps into %s (%s)", folder, opts)
    generate(folder, opts)
  return folder


def spec(config) -> tasks.TaskSpec:
  return tasks.TaskSpec(name="listops", vocab_size=len(VOCAB), max_len=config.max_len,
                        num_classes=NUM_CLASSES, kind="single")


def load(split: str, config) -> dict[str, np.ndarray]:
  """Tokenised arrays of ``split``: inputs int32[M, max_len], targets int32[M]."""
  if split not in SPLIT_FILES:
    raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLIT_FILES)}")
  folder = data_folder(config)
  path = folder / SPLIT_FILES[split]
  key = tasks.fingerprint(tasks.file_fingerprint(path), config.max_len, VOCAB)
  cache = tasks.tokenised_cache_dir(folder, config, "listops")

  def build() -> dict[str, np.ndarray]:
    sequences, targets = read_tsv(path)
    inputs, truncated = tasks.pad_or_truncate(sequences, config.max_len)
    if truncated:
      logging.warning("ListOps %s: %d of %d examples longer than max_len=%d were truncated",
                      split, truncated, len(sequences), config.max_len)
    return {"inputs": inputs, "targets": np.asarray(targets, np.int32)}

  return tasks.cached_arrays(cache / f"{split}-{key}.npz", build)
