"""Image (LRA, Tay et al. 2021): CIFAR-10 classification from a sequence of 1,024 gray pixels.

Source: TensorFlow Datasets ``cifar10`` (50k train / 10k test, 32x32 RGB, 10 classes), read
through ``_tfds.open_split``. Each image becomes gray with the BT.601 luma weights of LRA's
pipeline (``tf.image.rgb_to_grayscale``): ``gray = 0.2989 R + 0.5870 G + 0.1140 B`` rounded half up,
flattened row by row into 1,024 tokens. Token id = gray value + 1 (vocabulary 257): LRA used
the raw value 0-255 as the id with no padding mask; our encoder treats id 0 as padding, so
the shift keeps black pixels visible to attention. ``image_shape`` (32, 32) is in the TaskSpec
and in ``config.data.image_shape`` so 2-D aware mixers (MRA's patch blocks) see the layout.

Splits as in LRA: train = the first 90% of the TFDS train split (45k), validation = its
last 10% (5k), test = the test split (10k).
"""

from __future__ import annotations

import numpy as np

from lra_wavelet import tasks
from lra_wavelet.tasks import _tfds, _tokens

TFDS_NAME = "cifar10"
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32)
VAL_FRACTION = 0.1  # the last 10% of the TFDS train split
DOWNLOAD_HELP = (
    "CIFAR-10 comes from TensorFlow Datasets: with network access it is downloaded and prepared "
    "automatically (--config.data.tfds_download=true, the default; preparing cifar10 needs TensorFlow, "
    "pip install tensorflow-cpu); for an offline machine run `tfds build cifar10 "
    "--file_format=array_record --data_dir=DIR` where there is network access, copy DIR over and pass "
    "--config.data.tfds_data_dir=DIR (DIR then holds cifar10/3.0.2/ with dataset_info.json and the "
    "array_record shards)")


def check_image_config(config, native_shape: tuple[int, int] | None = None) -> tuple[int, int]:
  """(height, width) of the config; max_len must equal height * width (one token per pixel)."""
  shape = tuple(config.data.image_shape)
  if len(shape) != 2 or config.max_len != shape[0] * shape[1]:
    raise ValueError(f"max_len={config.max_len} must equal the pixels of data.image_shape={shape}; "
                     f"change both together")
  if native_shape is not None and shape != tuple(native_shape):
    raise ValueError(f"data.image_shape={shape} does not match the images of this task {tuple(native_shape)}; "
                     f"keep the config file's value")
  return shape


def spec(config) -> tasks.TaskSpec:
  return tasks.TaskSpec(name="image", vocab_size=_tokens.VOCAB_SIZE, max_len=config.max_len,
                        num_classes=NUM_CLASSES, kind="single", image_shape=check_image_config(config))


def split_range(split: str, num_train: int) -> tuple[str, slice]:
  """(TFDS split, rows of it) for one of our splits."""
  num_val = int(round(num_train * VAL_FRACTION))
  if split == "train":
    return "train", slice(0, num_train - num_val)
  if split == "validation":
    return "train", slice(num_train - num_val, num_train)
  return "test", slice(None)


def load(split: str, config) -> dict[str, np.ndarray]:
  """Pixel ids of ``split``: inputs int32[M, 1024] (gray + 1), targets int32[M] (0-9)."""
  if split not in tasks.SPLITS:
    raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(tasks.SPLITS)}")
  check_image_config(config, IMAGE_SHAPE)
  source = _tfds.open_split(TFDS_NAME, "test" if split == "test" else "train", config, DOWNLOAD_HELP)
  rows = split_range(split, len(source))[1]
  key = tasks.fingerprint(source.fingerprint(), split, "gray-bt601")

  def build() -> dict[str, np.ndarray]:
    images, labels = [], []
    for example in source:
      image = np.asarray(example["image"])
      if image.shape != IMAGE_SHAPE + (3,):
        raise tasks.DataFormatError(f"{TFDS_NAME}: expected 32x32 RGB images, found shape {image.shape}")
      images.append(image)
      labels.append(int(example["label"]))
    gray = _tokens.to_grayscale(np.stack(images)[rows]).reshape(-1, IMAGE_SHAPE[0] * IMAGE_SHAPE[1])
    return {"pixels": gray, "targets": np.asarray(labels, np.int32)[rows]}

  arrays = tasks.cached_arrays(tasks.cache_root(config) / "image" / f"{split}-{key}.npz", build)
  return {"inputs": _tokens.pixel_ids(arrays["pixels"]), "targets": arrays["targets"]}
