"""Retrieval (LRA, Tay et al. 2021): does paper 1 cite paper 2? ACL Anthology Network (AAN).

Data: the LRA release's ``tsv_data/new_aan_pairs.{train,eval,test}.tsv`` (147,086 / 18,090 /
17,437 pairs): no header, one pair per line, five tab-separated fields ``label, id1, id2,
text1, text2`` (label 0/1, written as an integer or a float such as ``1.0``; LRA reads the
files with quoting off, so a field never contains a tab). Both documents are read as raw
bytes and encoded at the byte level (id = byte + 1, 0 = padding, vocabulary 257), each cut
to ``max_len`` (LRA: 4000 per document). The task kind is ``pair``: the dual encoder in
``models/heads.py`` encodes ``inputs`` and ``inputs2`` with shared weights and classifies
[u, v, u*v, u-v].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import logging

from lra_wavelet import tasks
from lra_wavelet.tasks import _tokens

NUM_CLASSES = 2
SPLIT_FILES = {"train": "new_aan_pairs.train.tsv", "validation": "new_aan_pairs.eval.tsv",
               "test": "new_aan_pairs.test.tsv"}
NUM_FIELDS = 5  # label, id1, id2, text1, text2
DOWNLOAD_HELP = (
    "AAN comes with the LRA release: download "
    "https://storage.googleapis.com/long-range-arena/lra_release.gz, unpack it "
    "(tar xzf lra_release.gz) and pass --config.data_dir=.../lra_release/tsv_data, a folder "
    "holding new_aan_pairs.train.tsv, new_aan_pairs.eval.tsv and new_aan_pairs.test.tsv "
    "(no header; tab-separated label, id1, id2, text1, text2)")


def _label(field: bytes) -> int | None:
  try:
    value = float(field)
  except ValueError:
    return None
  return int(value) if value in (0.0, 1.0) else None


def read_tsv(path: Path) -> tuple[list[bytes], list[bytes], list[int]]:
  """One split file -> (documents 1, documents 2, labels). Malformed lines name file and line."""
  docs1, docs2, labels = [], [], []
  with open(path, "rb") as f:
    for lineno, line in enumerate(f, start=1):
      line = line.rstrip(b"\r\n")
      if not line.strip():
        continue
      fields = line.split(b"\t")
      if len(fields) != NUM_FIELDS:
        raise tasks.DataFormatError(
            f"{path}:{lineno}: expected {NUM_FIELDS} tab-separated fields (label, id1, id2, text1, "
            f"text2), found {len(fields)}; is this an LRA new_aan_pairs TSV file?")
      label = _label(fields[0])
      if label is None:
        raise tasks.DataFormatError(
            f"{path}:{lineno}: label {fields[0][:20]!r} is not 0 or 1 (first field of the line)")
      labels.append(label)
      docs1.append(fields[3])
      docs2.append(fields[4])
  return docs1, docs2, labels


def data_folder(config) -> Path:
  """The folder with the three AAN TSV files (``config.data_dir``); clear error if absent."""
  if not config.data_dir:
    raise tasks.MissingDataError(
        f"Retrieval needs the AAN files and has no offline generator. {DOWNLOAD_HELP}.")
  folder = Path(config.data_dir).expanduser()
  missing = [name for name in SPLIT_FILES.values() if not (folder / name).is_file()]
  if missing:
    raise tasks.MissingDataError(f"AAN data not found: {folder} lacks {', '.join(missing)}. {DOWNLOAD_HELP}.")
  return folder


def spec(config) -> tasks.TaskSpec:
  """max_len is the length of *each* document (the pair holds 2 * max_len tokens)."""
  return tasks.TaskSpec(name="retrieval", vocab_size=_tokens.VOCAB_SIZE, max_len=config.max_len,
                        num_classes=NUM_CLASSES, kind="pair")


def load(split: str, config) -> dict[str, np.ndarray]:
  """Byte ids of ``split``: inputs, inputs2 int32[M, max_len]; targets int32[M] (1 = cites)."""
  if split not in SPLIT_FILES:
    raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLIT_FILES)}")
  folder = data_folder(config)
  path = folder / SPLIT_FILES[split]
  key = tasks.fingerprint(tasks.file_fingerprint(path), config.max_len, "bytes+1")
  cache = tasks.tokenised_cache_dir(folder, config, "retrieval")

  def build() -> dict[str, np.ndarray]:
    docs1, docs2, labels = read_tsv(path)
    inputs, cut1 = _tokens.encode_bytes(docs1, config.max_len)
    inputs2, cut2 = _tokens.encode_bytes(docs2, config.max_len)
    if cut1 or cut2:
      logging.info("Retrieval %s: %d of %d documents longer than max_len=%d bytes were truncated",
                   split, cut1 + cut2, 2 * len(labels), config.max_len)
    return {"inputs": inputs, "inputs2": inputs2, "targets": np.asarray(labels, np.int32)}

  return tasks.cached_arrays(cache / f"{split}-{key}.npz", build)
