"""Reading a TensorFlow Datasets split without TensorFlow (LRA's Text and Image sources).

LRA takes IMDB (``imdb_reviews``) and CIFAR-10 (``cifar10``) from TFDS. TFDS can serve a
prepared dataset through ``tfds.data_source`` (random access to ``array_record`` shards,
decoded with NumPy/Pillow) with no TensorFlow installed; only *preparing* some datasets and
reading copies prepared in the older ``tfrecord`` format need TensorFlow. ``open_split``:

1. asks ``tfds.data_source`` for the split, preparing it as ``array_record`` when
   ``config.data.tfds_download`` is true (a no-op when it is already prepared);
2. falls back to ``tfds.load`` (TensorFlow) for a ``tfrecord`` copy;
3. otherwise raises ``MissingDataError`` naming the dataset, the folder it looked in, what
   went wrong, and how to get the data (``download_help``).

``tfds.testing.mock_data`` replaces step 1, so tasks built on this are tested offline.
The module is private (leading underscore) so ``tasks.get`` does not list it as a task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from lra_wavelet import tasks


class Split:
  """One TFDS split as a sized iterable of example dicts (NumPy values)."""

  def __init__(self, name: str, split: str, examples: Any, num_examples: int, data_dir: str):
    self.name, self.split, self.data_dir = name, split, data_dir
    self._examples = examples
    self._len = num_examples

  def __len__(self) -> int:
    return self._len

  def __iter__(self) -> Iterator[dict[str, Any]]:
    if hasattr(self._examples, "__getitem__"):  # random-access data source
      for i in range(self._len):
        yield self._examples[i]
    else:
      yield from self._examples

  def fingerprint(self) -> tuple[str, str, str, int]:
    """Identifies the split's content for array caches (dataset, split, folder, size)."""
    return (self.name, self.split, self.data_dir, self._len)


def _data_dir(config) -> str | None:
  folder = config.data.tfds_data_dir
  return str(Path(folder).expanduser()) if folder else None


def _load_with_tensorflow(name: str, split: str, data_dir: str | None) -> Split | None:
  """A tfrecord-prepared copy through ``tfds.load``; None when TensorFlow is not installed."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  if importlib.util.find_spec("tensorflow") is None:
    return None
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  builder = tfds.builder(name, data_dir=data_dir)
  num_examples = builder.info.splits[split].num_examples
  ds = builder.as_dataset(split=split)
  return Split(name, split, tfds.as_numpy(ds), num_examples, str(builder.data_dir))


def open_split(name: str, split: str, config, download_help: str) -> Split:
  """The TFDS split ``name[split]`` (see the module docstring for the order of attempts)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise tasks.MissingDataError(
        f"reading {name} needs tensorflow-datasets ({e}); pip install tensorflow-datasets. "
        f"{download_help}") from None
  data_dir = _data_dir(config)
  where = data_dir or "the default TFDS folder ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=config.data.tfds_download,
                              builder_kwargs={"file_format": "array_record"})
    return Split(name, split, source, len(source), data_dir or "")
  except NotImplementedError as e:  # prepared as tfrecord (or not prepared, with downloads off)
    split_data = _load_with_tensorflow(name, split, data_dir) if "file format" in str(e) else None
    if split_data is not None:
      return split_data
    reason = (f"no {name} prepared in array_record format in {where} "
              f"(a tfrecord copy needs TensorFlow: pip install tensorflow-cpu)")
  except Exception as e:  # pylint: disable=broad-except  (offline, no TensorFlow, not prepared, ...)
    if config.data.tfds_download:
      reason = f"tfds could not download/prepare {name} into {where} ({type(e).__name__}: {e})"
    else:
      reason = (f"no prepared copy of {name} in {where}, and downloads are off "
                f"(--config.data.tfds_download=false)")
  raise tasks.MissingDataError(f"{name} not available: {reason}. {download_help}")
