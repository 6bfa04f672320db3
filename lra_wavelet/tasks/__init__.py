"""Tasks: what a model is trained on, looked up by module name.

A task module ``lra_wavelet/tasks/<name>.py`` defines

* ``spec(config) -> TaskSpec``: vocabulary size, length, classes and kind;
* ``load(split, config) -> dict[str, np.ndarray]``: ``inputs`` int32[M, L] (0 = padding),
  optional ``inputs2`` (second sequence of a pair), ``targets`` int32[M] (or int32[M, L] for
  token-level tasks, -1 = not supervised) for split in {"train", "validation", "test"}.
* optionally ``report(results, workdir, config) -> dict``: extra entries for results.json
  (and files such as plots in ``workdir``), called once after the final test evaluation.

Shared here: the cache folder, atomic array caching, and the two errors a user can cause
(missing data, malformed data), each one sentence that says what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

SPLITS = ("train", "validation", "test")
KINDS = ("single", "pair", "token")


class MissingDataError(FileNotFoundError):
  """The task's data is not where the config says; the message says how to get it."""


class DataFormatError(ValueError):
  """A data file is malformed; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """Static facts about a task that the model and trainer need.

  kind: "single" (one sequence -> class), "pair" (two sequences -> class, dual encoder) or
  "token" (one class per position).
  """
  name: str
  vocab_size: int
  max_len: int
  num_classes: int
  kind: str = "single"
  image_shape: tuple[int, int] | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"task kind {self.kind!r} is not one of {KINDS}")


def get(name: str):
  """The task module ``lra_wavelet.tasks.<name>``."""
  try:
    return importlib.import_module(f"{__name__}.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"{__name__}.{name}":
      raise
    available = sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_"))
    raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(available)}") from None


def cache_root(config) -> Path:
  """Folder for generated data and tokenised arrays."""
  root = config.get("cache_dir") or os.environ.get("LRA_WAVELET_CACHE") or "~/.cache/lra_wavelet"
  return Path(root).expanduser()


def fingerprint(*parts: Any) -> str:
  """Short stable hash of JSON-able parts (config values, file sizes and mtimes)."""
  text = json.dumps(parts, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path: Path) -> tuple[str, int, int]:
  st = path.stat()
  return (str(path.resolve()), st.st_size, int(st.st_mtime_ns))


def writable_dir(preferred: Path, fallback: Path) -> Path:
  """``preferred`` if it can be created and written, else ``fallback`` (created)."""
  for folder in (preferred, fallback):
    try:
      folder.mkdir(parents=True, exist_ok=True)
      probe = tempfile.NamedTemporaryFile(dir=folder, delete=True)
      probe.close()
      return folder
    except OSError:
      continue
  raise OSError(f"neither {preferred} nor {fallback} is writable; set --config.cache_dir to a writable folder")


def tokenised_cache_dir(data_folder: Path, config, task: str) -> Path:
  """Where a task caches its tokenised arrays: next to its data, or under the cache root
  (``<cache_root>/<task>/tokenised``) when the data folder is read-only."""
  return writable_dir(Path(data_folder) / ".lra_wavelet_cache", cache_root(config) / task / "tokenised")


def cached_arrays(path: Path, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Load ``path`` (.npz) if present, else build the arrays and save them atomically."""
  if path.exists():
    with np.load(path) as data:
      return {k: data[k] for k in data.files}
  arrays = build()
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
  with os.fdopen(fd, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)
  return arrays


def pad_or_truncate(sequences: list[list[int]], length: int) -> tuple[np.ndarray, int]:
  """Token id lists -> int32[M, length] (0-padded) and the number of truncated sequences."""
  out = np.zeros((len(sequences), length), np.int32)
  truncated = 0
  for i, seq in enumerate(sequences):
    if len(seq) > length:
      truncated += 1
      seq = seq[:length]
    out[i, :len(seq)] = seq
  return out, truncated


def statistics(arrays: dict[str, np.ndarray], spec: TaskSpec) -> dict[str, Any]:
  """Size, length and label statistics of one split (for ``lra-wavelet data`` and results)."""
  lengths = (arrays["inputs"] != 0).sum(axis=1)
  targets = arrays["targets"]
  labels = targets[targets >= 0] if spec.kind == "token" else targets
  counts = np.bincount(labels.reshape(-1), minlength=spec.num_classes)
  return {
      "examples": int(arrays["inputs"].shape[0]),
      "length_mean": float(lengths.mean()) if len(lengths) else 0.0,
      "length_max": int(lengths.max()) if len(lengths) else 0,
      "class_counts": counts.tolist(),
      "majority_rate": float(counts.max() / max(counts.sum(), 1)),
  }
