"""Text (LRA, Tay et al. 2021): IMDB sentiment classification at the byte level.

Source: TensorFlow Datasets ``imdb_reviews`` (plain_text; 25k train and 25k test reviews,
labels 0 = negative, 1 = positive), read through ``_tfds.open_split`` (no TensorFlow needed
for a copy prepared in ``array_record`` format; ``--config.data.tfds_data_dir`` points at a
prepared copy). Tokens: UTF-8 bytes, id = byte + 1, 0 = padding (vocabulary 257, LRA's byte
encoder); reviews longer than ``max_len`` are truncated (the paper uses 4K tokens, LRA's
public config 1K).

Splits: LRA evaluates on the test split and also uses it as validation ("validation =
test"). ``config.data.val_fraction > 0`` instead holds out that fraction of the training
reviews (a seeded random subset) as a proper validation split.
"""

from __future__ import annotations

import numpy as np
from absl import logging

from lra_wavelet import tasks
from lra_wavelet.tasks import _tfds, _tokens

TFDS_NAME = "imdb_reviews"
NUM_CLASSES = 2
DOWNLOAD_HELP = (
    "IMDB comes from TensorFlow Datasets: with network access it is downloaded and prepared "
    "automatically (--config.data.tfds_download=true, the default); for an offline machine run "
    "`tfds build imdb_reviews --file_format=array_record --data_dir=DIR` where there is network "
    "access, copy DIR over and pass --config.data.tfds_data_dir=DIR (DIR then holds "
    "imdb_reviews/plain_text/1.0.0/ with dataset_info.json and the array_record shards)")


def spec(config) -> tasks.TaskSpec:
  return tasks.TaskSpec(name="text", vocab_size=_tokens.VOCAB_SIZE, max_len=config.max_len,
                        num_classes=NUM_CLASSES, kind="single")


def held_out_indices(num_examples: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, validation indices) of a seeded random hold-out of ``fraction``."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"a held-out fraction must be between 0 and 1, got {fraction}")
  order = np.random.default_rng(seed).permutation(num_examples)
  num_val = max(1, int(round(num_examples * fraction)))
  return np.sort(order[num_val:]), np.sort(order[:num_val])


def _source_split(split: str, config) -> tuple[str, str | None]:
  """(TFDS split to read, part of it to keep: None = all, 'train'/'validation' of a hold-out)."""
  if config.data.val_fraction:
    return ("test", None) if split == "test" else ("train", split)
  return ("train", None) if split == "train" else ("test", None)


def load(split: str, config) -> dict[str, np.ndarray]:
  """Byte ids of ``split``: inputs int32[M, max_len], targets int32[M] (0 neg, 1 pos)."""
  if split not in tasks.SPLITS:
    raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(tasks.SPLITS)}")
  if not 0.0 <= config.data.val_fraction < 1.0:
    raise ValueError(f"data.val_fraction must be 0 (LRA: validation = test) or between 0 and 1, "
                     f"got {config.data.val_fraction}")
  tfds_split, part = _source_split(split, config)
  source = _tfds.open_split(TFDS_NAME, tfds_split, config, DOWNLOAD_HELP)
  d = config.data
  key = tasks.fingerprint(source.fingerprint(), part, d.val_fraction if part else 0.0,
                          d.split_seed if part else 0, config.max_len, "bytes+1")

  def build() -> dict[str, np.ndarray]:
    texts, labels = [], []
    for example in source:
      texts.append(example["text"])
      labels.append(int(example["label"]))
    targets = np.asarray(labels, np.int32)
    if part is not None:
      keep = held_out_indices(len(texts), d.val_fraction, d.split_seed)[part == "validation"]
      texts, targets = [texts[i] for i in keep], targets[keep]
    inputs, truncated = _tokens.encode_bytes(texts, config.max_len)
    if truncated:
      logging.info("Text %s: %d of %d reviews longer than max_len=%d bytes were truncated",
                   split, truncated, len(texts), config.max_len)
    return {"inputs": inputs, "targets": targets}

  return tasks.cached_arrays(tasks.cache_root(config) / "text" / f"{split}-{key}.npz", build)
