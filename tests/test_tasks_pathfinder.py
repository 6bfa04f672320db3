"""Pathfinder / Path-X: the release-format reader on hand-written fixtures (text and np.save
metadata, an empty image), the seeded split, and the built-in generator's geometry and labels
checked by brute force."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from PIL import Image

from lra_wavelet import configlib, tasks
from lra_wavelet.tasks import pathfinder as pf
from tests.conftest import REPO


def config_for(tmp_path, data_dir="", resolution=32, difficulty="hard", **data):
  config = configlib.load_config_file(
      f"{REPO / 'configs/pathfinder.py'}:model=transformer,scale=tiny,resolution={resolution},"
      f"difficulty={difficulty}")
  with config.unlocked():
    config.data_dir = str(data_dir)
    config.cache_dir = str(tmp_path / "cache")
    config.data.update(data)
  return config


def write_release_fixture(root, resolution=32, batch=0, num=12, metadata_format="text"):
  """A difficulty folder written by hand in the release format: ``imgs/<batch>/sample_<k>.png``
  (8-bit gray), ``metadata/<batch>.npy`` rows 'imgs/<batch> sample_<k>.png <k> <label> + 7
  generator settings', and sample_3.png left empty (as in the release). Returns the expected
  (pixels, labels) of the readable images in metadata order."""
  folder = root / f"pathfinder{resolution}" / "curv_contour_length_14"
  (folder / "imgs" / str(batch)).mkdir(parents=True)
  (folder / "metadata").mkdir()
  rows, pixels, labels = [], [], []
  for k in range(num):
    label = k % 2
    name = f"sample_{k}.png"
    path = folder / "imgs" / str(batch) / name
    if k == 3:
      path.write_bytes(b"")  # the empty image
    else:
      ramp = np.arange(resolution * resolution).reshape(resolution, resolution)
      image = (ramp * (k + 1) % 256).astype(np.uint8)
      Image.fromarray(image, mode="L").save(path)
      pixels.append(image.reshape(-1))
      labels.append(label)
    rows.append([f"imgs/{batch}", name, str(k), str(label), "1.0", "14", "4", "2", "0.5", "1", "1"])
  meta = folder / "metadata" / f"{batch}.npy"
  if metadata_format == "text":
    meta.write_text("".join(" ".join(r) + "\n" for r in rows))
  else:  # the original generator's np.save of a string array
    with open(meta, "wb") as f:
      np.save(f, np.array(rows))
  return folder, np.stack(pixels), np.array(labels)


@pytest.mark.parametrize("metadata_format", ["text", "npy"])
def test_reader_on_release_format_skips_the_empty_image(tmp_path, metadata_format):
  folder, pixels, labels = write_release_fixture(tmp_path, metadata_format=metadata_format)
  got_pixels, got_labels, counts = pf.read_release(folder, 32)
  assert counts == {"listed": 12, "unreadable": 1, "missing": 0, "used": 11}
  np.testing.assert_array_equal(got_pixels, pixels)
  np.testing.assert_array_equal(got_labels, labels)


def test_reader_accepts_16_bit_and_colour_pngs(tmp_path):
  gray = (np.arange(1024).reshape(32, 32) % 256).astype(np.uint8)
  Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "a.png")  # 16-bit gray
  rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1)
  Image.fromarray(rgb).save(tmp_path / "b.png")
  np.testing.assert_array_equal(pf.read_image(tmp_path / "a.png", 32), gray.reshape(-1))
  luma = np.floor(0.2989 * rgb[..., 0] + 0.5870 * rgb[..., 1] + 0.1140 * rgb[..., 2] + 0.5)
  np.testing.assert_array_equal(pf.read_image(tmp_path / "b.png", 32), luma.reshape(-1))
  (tmp_path / "c.png").write_bytes(b"\x89PNG not really")
  assert pf.read_image(tmp_path / "c.png", 32) is None


def test_load_splits_caches_and_shifts_pixels(tmp_path):
  write_release_fixture(tmp_path, num=40)
  config = config_for(tmp_path, data_dir=tmp_path)
  splits = {s: pf.load(s, config) for s in tasks.SPLITS}
  assert [len(splits[s]["targets"]) for s in tasks.SPLITS] == [31, 3, 5]  # 39 readable: 80/10/10
  _, pixels, labels = write_release_fixture(tmp_path / "again", num=40)
  # Together the splits hold every readable image exactly once, as pixel + 1.
  seen = np.concatenate([splits[s]["inputs"] for s in tasks.SPLITS]) - 1
  order = np.lexsort(seen.T[::-1])
  np.testing.assert_array_equal(seen[order], pixels[np.lexsort(pixels.T[::-1])])
  assert splits["train"]["inputs"].dtype == np.int32 and splits["train"]["inputs"].min() >= 1
  cached = list((tmp_path / "pathfinder32" / "curv_contour_length_14" / ".lra_wavelet_cache").glob("*.npz"))
  assert len(cached) == 3
  spec = pf.spec(config)
  assert (spec.max_len, spec.vocab_size, spec.image_shape, spec.num_classes) == (1024, 257, (32, 32), 2)


def test_split_is_seeded_partition():
  parts = pf.split_indices(1000, seed=3)
  assert [len(parts[s]) for s in tasks.SPLITS] == [800, 100, 100]
  assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(1000))
  assert not np.array_equal(parts["test"], pf.split_indices(1000, seed=4)["test"])
  np.testing.assert_array_equal(parts["test"], pf.split_indices(1000, seed=3)["test"])


def test_malformed_metadata_names_file_and_line(tmp_path):
  folder, _, _ = write_release_fixture(tmp_path, num=3)
  meta = folder / "metadata" / "0.npy"
  meta.write_text(meta.read_text() + "imgs/0 sample_2.png 2 7 1.0\n")
  with pytest.raises(tasks.DataFormatError, match=f"{meta}:4: label .* not 0 or 1"):
    pf.read_release(folder, 32)
  meta.write_text("imgs/0 sample_0.png\n")
  with pytest.raises(tasks.DataFormatError, match=f"{meta}:1: expected at least 4"):
    pf.read_release(folder, 32)


def test_wrong_resolution_and_missing_data_are_clear(tmp_path):
  folder, _, _ = write_release_fixture(tmp_path, num=2)
  with pytest.raises(tasks.DataFormatError, match="is 32x32, expected 64x64"):
    pf.read_release(folder, 64)
  config = config_for(tmp_path, data_dir=tmp_path / "nowhere")
  with pytest.raises(tasks.MissingDataError, match="lra_release.*pathfinder32/.*metadata/<batch>.npy"):
    pf.load("train", config)
  with pytest.raises(ValueError, match="max_len=1000 must equal"):
    with config.unlocked():
      config.max_len = 1000
    pf.spec(config)


def _dash_points(dash, spacing=0.1):
  (ax, ay), (bx, by) = dash
  n = max(2, int(math.hypot(bx - ax, by - ay) / spacing) + 1)
  t = np.linspace(0, 1, n)[:, None]
  return np.array([ax, ay]) + t * np.array([bx - ax, by - ay])


@pytest.mark.parametrize("resolution, difficulty", [(32, "hard"), (32, "easy"), (64, "medium"), (40, "hard")])
def test_generator_geometry_and_labels_by_brute_force(resolution, difficulty):
  geo = pf.geometry_for(resolution)
  paddles = pf.CONTOUR_LENGTHS[difficulty]
  rng = random.Random(7)
  for trial in range(6):
    label = trial % 2
    layout = pf.draw_layout(rng, label, resolution, paddles)
    paths = layout.canvas.paths
    assert len(paths[1]) == len(paths[2]) == paddles
    points = {pid: np.concatenate([_dash_points(d) for d in dashes]) for pid, dashes in paths.items()}
    # Different paths never come closer than thickness + margin (centre lines, brute force).
    ids = sorted(points)
    for i in ids:
      assert points[i].min() >= geo.thickness and points[i].max() <= resolution - geo.thickness
      for j in ids:
        if i < j:
          gap = np.sqrt(((points[i][:, None] - points[j][None]) ** 2).sum(-1)).min()
          assert gap >= geo.thickness + geo.margin - 0.01, (i, j, gap)
    # Markers: the origin of one target path, and the far end of the same path iff label 1.
    first, second = layout.markers
    marked, other = layout.marked_path, 3 - layout.marked_path
    assert first == paths[marked][0][0]
    assert second == (paths[marked] if label == 1 else paths[other])[-1][1]
    image = layout.render()
    assert image.shape == (resolution, resolution) and image.dtype == np.uint8
    x, y = (int(v) for v in second)
    assert image[y, x] > 200  # a marker is drawn at its place


def test_generate_writes_the_release_layout(tmp_path):
  opts = pf.GeneratorOptions(resolution=32, difficulty="easy", num_images=30, images_per_batch=12, seed=1)
  root = pf.generate(tmp_path / "gen", opts, workers=1)
  folder = root / "pathfinder32" / "curv_baseline"
  assert sorted(p.name for p in (folder / "metadata").iterdir()) == ["0.npy", "1.npy", "2.npy"]
  lines = (folder / "metadata" / "2.npy").read_text().splitlines()
  assert len(lines) == 6 and lines[0].split()[:3] == ["imgs/2", "sample_0.png", "0"]
  assert all(len(line.split()) == 11 for line in lines)
  pixels, labels, counts = pf.read_release(folder, 32)
  assert counts["used"] == 30 and set(labels.tolist()) == {0, 1}
  with Image.open(folder / "imgs" / "1" / "sample_5.png") as img:
    assert img.mode == "L" and img.size == (32, 32)
  again_root = pf.generate(tmp_path / "gen2", opts, workers=1)
  again = pf.read_release(again_root / "pathfinder32" / "curv_baseline", 32)
  np.testing.assert_array_equal(pixels, again[0])  # seeded


def test_pathx_config_is_pathfinder_at_128():
  config = configlib.load_config_file(f"{REPO / 'configs/pathx.py'}:model=transformer,scale=paper")
  d = config.data
  assert (config.task, config.max_len, d.resolution, d.difficulty) == ("pathfinder", 16384, 128, "hard")
  assert tuple(config.data.image_shape) == (128, 128) and config.model.pooling == "mean"
  with pytest.raises(configlib.ConfigError, match="valid: easy, medium, hard"):
    configlib.load_config_file(f"{REPO / 'configs/pathfinder.py'}:difficulty=extreme")


def test_data_dir_may_point_below_the_release_root(tmp_path):
  folder, _, _ = write_release_fixture(tmp_path, num=4)
  for root in (tmp_path, tmp_path / "pathfinder32", folder):
    assert pf.difficulty_folder(root, 32, "hard") == folder
  assert pf.difficulty_folder(tmp_path, 32, "easy") == tmp_path / "pathfinder32" / "curv_baseline"
