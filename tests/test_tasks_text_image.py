"""Text (IMDB bytes) and Image (CIFAR-10 gray pixels) on ``tfds.testing.mock_data`` (no
TensorFlow, no download): LRA's split conventions, byte/pixel ids against independent
encodings, grayscale against Pillow, and the missing-data message."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from lra_wavelet import configlib, tasks
from lra_wavelet.tasks import _tokens, image, text
from tests.conftest import REPO

GREAT = "gr\u00e8at"  # non-ASCII: two UTF-8 bytes
TRAIN_REVIEWS = [f"train review {i}: {GREAT if i % 2 else 'dull'} film " * (i + 1) for i in range(12)]
TEST_REVIEWS = [f"test review {i} \u2603" for i in range(8)]
RNG = np.random.default_rng(0)
TRAIN_IMAGES = RNG.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
TEST_IMAGES = RNG.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
FAKE = {
    ("imdb_reviews", "train"): [{"text": t, "label": i % 2} for i, t in enumerate(TRAIN_REVIEWS)],
    ("imdb_reviews", "test"): [{"text": t.encode(), "label": 1 - i % 2} for i, t in enumerate(TEST_REVIEWS)],
    ("cifar10", "train"): [{"image": im, "label": i % 10, "id": f"train_{i}"}
                           for i, im in enumerate(TRAIN_IMAGES)],
    ("cifar10", "test"): [{"image": im, "label": (i * 3) % 10, "id": f"test_{i}"}
                          for i, im in enumerate(TEST_IMAGES)],
}


def fake_source(builder, split, **kwargs):
  """Replaces ``DatasetBuilder.as_data_source``: split-specific examples we know."""
  return FAKE[(builder.name, split)]


def config_for(name, tmp_path, **data):
  config = configlib.load_config_file(f"{REPO / f'configs/{name}.py'}:model=transformer,scale=tiny")
  with config.unlocked():
    config.cache_dir = str(tmp_path / "cache")
    config.data.update(data)
  return config


def byte_reference(doc, length):
  ids = [b + 1 for b in (doc.encode() if isinstance(doc, str) else doc)][:length]
  return ids + [0] * (length - len(ids))


def test_byte_ids_match_reference():
  docs = ["h\u00e9llo", b"\x00\xff\x10", "x" * 10, ""]
  ids, truncated = _tokens.encode_bytes(docs, 6)
  assert ids.dtype == np.int32 and truncated == 1
  assert ids.tolist() == [byte_reference(d, 6) for d in docs]
  assert ids[1, :3].tolist() == [1, 256, 17]  # byte 0 -> 1 (not padding), 255 -> 256


def test_text_follows_lra_splits(tmp_path):
  config = config_for("text", tmp_path)
  with tfds.testing.mock_data(as_data_source_fn=fake_source):
    splits = {s: text.load(s, config) for s in tasks.SPLITS}
  assert splits["train"]["inputs"].tolist() == [byte_reference(t, 256) for t in TRAIN_REVIEWS]
  assert splits["train"]["targets"].tolist() == [i % 2 for i in range(12)]
  for split in ("validation", "test"):  # LRA: validation = test = the test split
    assert splits[split]["inputs"].tolist() == [byte_reference(t, 256) for t in TEST_REVIEWS]
    assert splits[split]["targets"].tolist() == [1 - i % 2 for i in range(8)]
  spec = text.spec(config)
  assert (spec.vocab_size, spec.max_len, spec.num_classes, spec.kind) == (257, 256, 2, "single")


def test_text_held_out_validation(tmp_path):
  config = config_for("text", tmp_path, val_fraction=0.25, split_seed=3)
  with tfds.testing.mock_data(as_data_source_fn=fake_source):
    train, val, test = (text.load(s, config) for s in tasks.SPLITS)
  everything = sorted(map(tuple, [byte_reference(t, 256) for t in TRAIN_REVIEWS]))
  assert (len(train["targets"]), len(val["targets"])) == (9, 3)
  assert sorted(map(tuple, np.concatenate([train["inputs"], val["inputs"]]).tolist())) == everything
  assert test["inputs"].tolist() == [byte_reference(t, 256) for t in TEST_REVIEWS]


def test_text_on_random_mock_data(tmp_path):
  config = config_for("text", tmp_path)
  with tfds.testing.mock_data(num_examples=6):
    arrays = text.load("train", config)
  assert arrays["inputs"].shape == (6, 256) and arrays["inputs"].max() < 257
  assert set(arrays["targets"].tolist()) <= {0, 1}


def test_missing_tfds_data_says_how_to_get_it(tmp_path):
  config = config_for("text", tmp_path, tfds_data_dir=str(tmp_path / "tfds"), tfds_download=False)
  with pytest.raises(tasks.MissingDataError,
                     match="imdb_reviews.*tfds build imdb_reviews --file_format=array_record"):
    text.load("train", config)


def gray_reference(rgb):
  r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
  return np.floor(0.2989 * r + 0.5870 * g + 0.1140 * b + 0.5).astype(np.int64)


def test_grayscale_matches_reference_and_pillow():
  gray = _tokens.to_grayscale(TRAIN_IMAGES)
  np.testing.assert_array_equal(gray, gray_reference(TRAIN_IMAGES))
  # Pillow's ITU-R 601-2 conversion uses 0.299 instead of 0.2989: at most one level apart.
  pil = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in TRAIN_IMAGES])
  assert np.abs(gray.astype(int) - pil).max() <= 1
  assert _tokens.pixel_ids(np.array([0, 255], np.uint8)).tolist() == [1, 256]


def test_image_follows_lra_splits(tmp_path):
  config = config_for("image", tmp_path)
  with tfds.testing.mock_data(as_data_source_fn=fake_source):
    splits = {s: image.load(s, config) for s in tasks.SPLITS}
  expected = {"train": (TRAIN_IMAGES[:18], [i % 10 for i in range(18)]),
              "validation": (TRAIN_IMAGES[18:], [8, 9]),  # the last 10% of train
              "test": (TEST_IMAGES, [(i * 3) % 10 for i in range(10)])}
  for split, (images, labels) in expected.items():
    np.testing.assert_array_equal(splits[split]["inputs"], gray_reference(images).reshape(-1, 1024) + 1)
    assert splits[split]["targets"].tolist() == labels
  spec = image.spec(config)
  assert (spec.vocab_size, spec.max_len, spec.image_shape, spec.num_classes) == (257, 1024, (32, 32), 10)
  assert config.model.pooling == "mean" and tuple(config.data.image_shape) == (32, 32)


def test_image_on_random_mock_data_and_shape_checks(tmp_path):
  config = config_for("image", tmp_path)
  with tfds.testing.mock_data(num_examples=10):
    arrays = image.load("validation", config)
  assert arrays["inputs"].shape == (1, 1024) and arrays["inputs"].min() >= 1
  with config.unlocked():
    config.max_len = 512
  with pytest.raises(ValueError, match="max_len=512 must equal the pixels of data.image_shape"):
    image.spec(config)
