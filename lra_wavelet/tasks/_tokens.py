"""Byte-level token ids shared by the LRA tasks whose tokens are raw bytes or pixel values.

LRA (Tay et al. 2021) reads Text (IMDB) and Retrieval (AAN) one byte at a time and Image
(CIFAR-10) and Pathfinder one grayscale pixel at a time. Both are values 0-255, and this
module gives them one id convention: ``id = value + 1``, so id 0 stays the padding id the
encoder masks out (``tokens != 0``) and the vocabulary has ``VOCAB_SIZE = 257`` entries.
For text this is exactly LRA's byte encoder (``tfds.deprecated.text.ByteTextEncoder``); for
pixels LRA used the raw values 0-255 as ids with no padding mask, and the shift by one keeps
black pixels from being mistaken for padding.

The module is private (leading underscore) so ``tasks.get`` does not list it as a task.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

VOCAB_SIZE = 257  # 0 = padding, value v (0..255) -> v + 1
# ITU-R BT.601 luma weights as used by tf.image.rgb_to_grayscale in LRA's CIFAR-10 pipeline.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def as_bytes(doc: str | bytes) -> bytes:
  """A document as bytes (str is encoded as UTF-8)."""
  return doc.encode("utf-8") if isinstance(doc, str) else bytes(doc)


def encode_bytes(docs: Sequence[str | bytes], length: int) -> tuple[np.ndarray, int]:
  """Documents -> int32[M, length] byte ids (byte + 1, 0-padded) and how many were truncated."""
  out = np.zeros((len(docs), length), np.int32)
  truncated = 0
  for i, doc in enumerate(docs):
    data = as_bytes(doc)
    if len(data) > length:
      truncated += 1
      data = data[:length]
    out[i, :len(data)] = np.frombuffer(data, np.uint8).astype(np.int32) + 1
  return out, truncated


def pixel_ids(pixels: np.ndarray) -> np.ndarray:
  """uint8 pixel values [...] -> int32 ids [...] (value + 1; no id is 0, so no position is masked)."""
  if pixels.dtype != np.uint8:
    raise ValueError(f"pixel values must be uint8 (0-255), got dtype {pixels.dtype}")
  return pixels.astype(np.int32) + 1


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
  """uint8 RGB [..., 3] -> uint8 gray [...]: 0.2989 R + 0.5870 G + 0.1140 B rounded half up."""
  if rgb.shape[-1] != 3:
    raise ValueError(f"expected RGB images with a last axis of 3, got shape {rgb.shape}")
  gray = rgb.astype(np.float64) @ np.asarray(GRAY_WEIGHTS, np.float64)
  return np.clip(np.floor(gray + 0.5), 0, 255).astype(np.uint8)
