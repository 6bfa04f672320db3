"""Pathfinder and Path-X (LRA, Tay et al. 2021; Linsley et al. 2018; Kim et al. 2020).

An image shows two round markers and several dashed curved paths; the label is 1 when the
markers sit at the two ends of one path and 0 when they sit on different paths. The model
reads the image as a sequence of gray pixels (id = value + 1, vocabulary 257, see
``_tokens``): Pathfinder = 32x32 (1,024 tokens), Path-X = 128x128 (16,384 tokens), both at
the hard difficulty in LRA.

Release layout (read by ``read_release``; ``config.data_dir`` is the folder holding
``pathfinder<R>/``)::

    pathfinder<R>/<difficulty dir>/imgs/<batch>/sample_<k>.png
    pathfinder<R>/<difficulty dir>/metadata/<batch>.npy

difficulty dirs: easy = ``curv_baseline``, medium = ``curv_contour_length_9``, hard =
``curv_contour_length_14``. A metadata file lists one image per line, space-separated, with
field 0 the image folder (``imgs/<batch>``), 1 the file name and 3 the label; the other
fields are generator settings. The LRA release writes these files as plain text despite the
``.npy`` suffix; the original generator (github.com/drewlinsley/pathfinder) saves the same
rows with ``np.save`` as a string array; both are accepted. A folder may hold any number of
batches. Empty or unreadable images (the release has at least one empty file) are skipped
and counted in the log. Splits: a seeded random 80/10/10 partition of all images.

``generate`` draws Pathfinder-style images at any resolution and writes that same layout,
so the task runs offline and the reader is exercised. Our drawing procedure (not the
original code): two target paths grow from origins ``seed_distance`` apart, dash by dash (a
dash of ``paddle_length``, then a gap of ``margin``), bending steadily with some jitter
(``plan_path``: a depth-first search that takes dashes back when stuck); a dash is accepted
only if it stays ``thickness + margin`` away from every other path, so paths never touch.
Markers go on the origin of one target path and on the far end of the same path (label 1)
or of the other path (label 0), so both classes have one marker near the other path's
start; ``DistanceBalance`` keeps the distance between the markers from giving the label
away. Short distractor paths fill the rest. Geometry per resolution follows the LRA
release settings (paddle length, margin, thickness, marker radius, seed distance,
distractor budget); other resolutions scale the nearest entry. Strokes are drawn at
``supersample`` times the resolution and box-averaged (anti-aliasing).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from absl import logging
from PIL import Image, ImageDraw, UnidentifiedImageError

from lra_wavelet import tasks
from lra_wavelet.tasks import _tokens
from lra_wavelet.tasks.image import check_image_config

NUM_CLASSES = 2
DIFFICULTY_DIRS = {"easy": "curv_baseline", "medium": "curv_contour_length_9",
                   "hard": "curv_contour_length_14"}
CONTOUR_LENGTHS = {"easy": 6, "medium": 9, "hard": 14}  # paddles per target path
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
NPY_MAGIC = b"\x93NUMPY"
DOWNLOAD_HELP = (
    "Pathfinder comes with the LRA release: download "
    "https://storage.googleapis.com/long-range-arena/lra_release.gz, unpack it (tar xzf "
    "lra_release.gz) and pass --config.data_dir=.../lra_release (the folder holding pathfinder32/, "
    "pathfinder128/, ...; each pathfinder<R>/<difficulty>/ holds imgs/<batch>/sample_<k>.png and "
    "metadata/<batch>.npy with one 'imgs/<batch> sample_<k>.png <n> <label> ...' line per image); "
    "or leave data_dir empty to generate Pathfinder images offline")


# ----------------------------------------------------------------------------- generator

@dataclasses.dataclass(frozen=True)
class Geometry:
  """Drawing sizes in pixels of the target resolution."""
  paddle_length: float    # length of one dash
  margin: float           # gap between dashes, and the least distance between different dashes
  thickness: float        # stroke width
  marker_radius: float
  seed_distance: float    # distance between the origins of the two target paths
  distractor_budget: int  # distractor paths x their length, in paddles

  def scaled(self, factor: float) -> "Geometry":
    return Geometry(self.paddle_length * factor, self.margin * factor, self.thickness * factor,
                    self.marker_radius * factor, self.seed_distance * factor, self.distractor_budget)


# The LRA release's settings per resolution (lra_benchmarks/data/pathfinder.py); the
# thickness at 32 is raised from 0.5 to 1 pixel so a dash survives the box filter.
GEOMETRY = {  # resolution: (paddle_length, margin, thickness, marker_radius, seed_distance, distractor_budget)
    r: Geometry(*values) for r, values in {
        32: (2, 1, 1.0, 1.5, 7, 20),
        64: (5, 1, 1.0, 2.5, 12, 22),
        128: (5, 2.5, 1.5, 3, 20, 35),
        256: (5, 3, 2.0, 5, 27, 30),
    }.items()
}


def geometry_for(resolution: int) -> Geometry:
  """The release geometry at ``resolution``, or the nearest entry scaled to it."""
  if resolution in GEOMETRY:
    return GEOMETRY[resolution]
  nearest = min(GEOMETRY, key=lambda r: abs(math.log(resolution / r)))
  return GEOMETRY[nearest].scaled(resolution / nearest)


@dataclasses.dataclass(frozen=True)
class GeneratorOptions:
  resolution: int = 32
  difficulty: str = "hard"
  num_images: int = 20_000
  images_per_batch: int = 1_000   # images per imgs/<batch>/ folder and metadata/<batch>.npy
  max_turn_degrees: float = 30.0  # bend scale: a path turns by 30-70% of it per dash, plus jitter
  seed: int = 0

  def __post_init__(self):
    if self.difficulty not in DIFFICULTY_DIRS:
      raise ValueError(f"unknown difficulty {self.difficulty!r}; valid: {', '.join(DIFFICULTY_DIRS)}")
    if self.resolution < 16:
      raise ValueError(f"resolution {self.resolution} is too small to draw paths; use 16 or more")


Point = tuple[float, float]


class Canvas:
  """Supersampled drawing state of one image; points are (x, y) in target pixels.

  ``owner`` holds the id of the path that inked each pixel (0 = background); ``blocked`` marks
  every pixel within ``thickness + margin`` of a committed dash, where no other dash may go.
  """

  def __init__(self, resolution: int, geo: Geometry, supersample: int):
    self.r, self.geo, self.s = resolution, geo, supersample
    size = resolution * supersample
    self.owner = Image.new("L", (size, size))
    self.blocked = Image.new("L", (size, size))
    self._owner_draw = ImageDraw.Draw(self.owner)
    self._blocked_draw = ImageDraw.Draw(self.blocked)
    self._blocked_px = self.blocked.load()
    self._owner_px = self.owner.load()
    self.lo = geo.thickness + 0.5  # strokes stay inside [lo, r - lo]
    self.hi = resolution - self.lo
    self.paths: dict[int, list[tuple[Point, Point]]] = {}  # path id -> dashes (start, tip)

  def free(self, a: Point, b: Point) -> bool:
    """True if the segment a->b is inside the frame and crosses no blocked pixel."""
    lo, hi = self.lo, self.hi
    if not (lo <= a[0] <= hi and lo <= a[1] <= hi and lo <= b[0] <= hi and lo <= b[1] <= hi):
      return False
    s, px = self.s, self._blocked_px
    ax, ay, dx, dy = a[0] * s, a[1] * s, (b[0] - a[0]) * s, (b[1] - a[1]) * s
    steps = int(math.hypot(dx, dy)) + 1  # one probe per supersampled pixel
    for i in range(steps + 1):
      t = i / steps
      if px[int(ax + t * dx), int(ay + t * dy)]:
        return False
    return True

  def disk_free(self, center: Point, radius: float, path_id: int) -> bool:
    """True if no other path's ink lies within ``radius`` of ``center``."""
    s, px, size = self.s, self._owner_px, self.r * self.s
    cx, cy, rr = center[0] * s, center[1] * s, radius * s
    for y in range(max(int(cy - rr), 0), min(int(cy + rr) + 1, size)):
      for x in range(max(int(cx - rr), 0), min(int(cx + rr) + 1, size)):
        if (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= rr * rr and px[x, y] not in (0, path_id):
          return False
    return True

  def ink(self, a: Point, b: Point, path_id: int) -> None:
    s = self.s
    self._owner_draw.line([(a[0] * s, a[1] * s), (b[0] * s, b[1] * s)], fill=path_id,
                          width=max(1, round(self.geo.thickness * s)))

  def block(self, a: Point, b: Point) -> None:
    """Forbid every point within ``thickness + margin`` of the dash a->b: a band that wide on
    each side, extended as far beyond both ends, plus one supersampled pixel of slack for the
    rasterisation and the probe spacing of ``free``."""
    reach, s = self.geo.thickness + self.geo.margin + 1 / self.s, self.s
    length = max(math.hypot(b[0] - a[0], b[1] - a[1]), 1e-9)
    ux, uy = (b[0] - a[0]) / length * reach, (b[1] - a[1]) / length * reach
    self._blocked_draw.line([((a[0] - ux) * s, (a[1] - uy) * s), ((b[0] + ux) * s, (b[1] + uy) * s)],
                            fill=255, width=max(1, round(2 * reach * s)))

  def block_disk(self, center: Point, radius: float) -> None:
    c, r = (center[0] * self.s, center[1] * self.s), radius * self.s
    self._blocked_draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)

  def render(self, markers: list[Point]) -> np.ndarray:
    """uint8[R, R]: the ink box-averaged down to the target resolution, markers included."""
    ink = self.owner.point(lambda v: 255 if v else 0)
    draw = ImageDraw.Draw(ink)
    for center in markers:
      c, r = (center[0] * self.s, center[1] * self.s), self.geo.marker_radius * self.s
      draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=255)
    big = np.asarray(ink, np.float32).reshape(self.r, self.s, self.r, self.s)
    return np.rint(big.mean(axis=(1, 3))).astype(np.uint8)


def _point_segment_distance(p: Point, a: Point, b: Point) -> float:
  dx, dy = b[0] - a[0], b[1] - a[1]
  t = ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / max(dx * dx + dy * dy, 1e-12)
  t = min(1.0, max(0.0, t))
  return math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy)


def segment_distance(a: Point, b: Point, c: Point, d: Point) -> float:
  """Least distance between the segments a-b and c-d (0 if they cross)."""
  def side(p, q, r):
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
  if side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0:
    return 0.0
  return min(_point_segment_distance(a, c, d), _point_segment_distance(b, c, d),
             _point_segment_distance(c, a, b), _point_segment_distance(d, a, b))


def plan_path(canvas: Canvas, rng: random.Random, start: Point, angle: float, num_paddles: int,
              max_turn: float, tries: int = 6, flip: float = 0.15, budget: int = 0
              ) -> list[tuple[Point, Point]] | None:
  """Dashes (start, tip) of a path of ``num_paddles`` dashes from ``start``, or None.

  The path bends steadily (a rate of 30-70% of ``max_turn`` per dash whose sign flips with
  probability ``flip`` at each dash) plus a uniform jitter of +-max_turn/3 that widens on
  each retry, so long paths curl and wind instead of running into the frame. A dash,
  together with the gap after it, must avoid ``blocked`` (other paths, markers, the frame)
  and keep ``thickness + margin`` away from the path's own earlier dashes. Depth-first
  search: when no turn fits, the previous dash is taken back (at most ``budget`` dashes are
  tried in all, default 30 per dash). Nothing is drawn; ``commit_path`` draws the result.
  """
  geo = canvas.geo
  step, reach = geo.paddle_length + geo.margin, geo.thickness + geo.margin
  budget = budget or 30 * num_paddles
  bend = rng.choice((-1, 1)) * rng.uniform(0.3, 0.7) * max_turn
  dashes: list[tuple[Point, Point]] = []
  stack = [[start, angle, bend, tries]]  # stack[k]: where dash k starts and its tries left
  while stack and budget > 0:
    if len(dashes) == num_paddles:
      return dashes
    frame = stack[-1]
    (x, y), heading, bend, left = frame
    if left == 0:
      stack.pop()
      if dashes:
        dashes.pop()
      continue
    frame[3] -= 1
    budget -= 1
    attempt = tries - left
    if not dashes:
      turn = 0.0 if attempt == 0 else rng.uniform(-math.pi, math.pi)
    else:
      turn = bend + rng.uniform(-1.0, 1.0) * max_turn / 3 * (1 + attempt)
    cos, sin = math.cos(heading + turn), math.sin(heading + turn)
    tip = (x + geo.paddle_length * cos, y + geo.paddle_length * sin)
    nxt = (x + step * cos, y + step * sin)
    end = nxt if len(dashes) < num_paddles - 1 else tip
    if not canvas.free((x, y), end):
      continue
    if any(segment_distance((x, y), end, a, b) < reach for a, b in dashes[:-1]):
      continue
    dashes.append(((x, y), tip))
    stack.append([nxt, heading + turn, -bend if rng.random() < flip else bend, tries])
  return dashes if len(dashes) == num_paddles else None


def commit_path(canvas: Canvas, dashes: list[tuple[Point, Point]], path_id: int) -> None:
  canvas.paths[path_id] = dashes
  for a, b in dashes:
    canvas.ink(a, b, path_id)
    canvas.block(a, b)


def _add_path(canvas: Canvas, rng: random.Random, start: Point, angle: float, num_paddles: int,
              path_id: int, max_turn: float) -> Point | None:
  """Plan and draw one path; its far end, or None if it does not fit."""
  dashes = plan_path(canvas, rng, start, angle, num_paddles, max_turn)
  if dashes is None:
    return None
  commit_path(canvas, dashes, path_id)
  return dashes[-1][1]


@dataclasses.dataclass
class Layout:
  """What one image shows: paths 1 and 2 are the targets, 3... distractors; two markers."""
  canvas: Canvas
  markers: tuple[Point, Point]
  marked_path: int  # the target path whose origin carries the first marker

  def render(self) -> np.ndarray:
    return self.canvas.render(list(self.markers))


def draw_layout(rng: random.Random, label: int, resolution: int, num_paddles: int,
                max_turn_degrees: float = 30.0, max_attempts: int = 500) -> Layout:
  """Paths and markers of one image; the markers are on one path iff ``label`` == 1."""
  geo = geometry_for(resolution)
  supersample = max(2, 128 // resolution)
  max_turn = math.radians(max_turn_degrees)
  distractor_len = max(1, num_paddles // 3)
  num_distractors = geo.distractor_budget // distractor_len
  lo = geo.marker_radius + geo.thickness + 1
  hi = resolution - lo
  clearance = geo.marker_radius + geo.margin
  for _ in range(max_attempts):
    canvas = Canvas(resolution, geo, supersample)
    origin_a = (rng.uniform(lo, hi), rng.uniform(lo, hi))
    phi = rng.uniform(-math.pi, math.pi)
    origin_b = (origin_a[0] + geo.seed_distance * math.cos(phi),
                origin_a[1] + geo.seed_distance * math.sin(phi))
    if not (lo <= origin_b[0] <= hi and lo <= origin_b[1] <= hi):
      continue
    # The target paths start heading away from each other (within a half-plane each).
    end_a = _add_path(canvas, rng, origin_a, phi + math.pi + rng.uniform(-math.pi / 2, math.pi / 2),
                      num_paddles, 1, max_turn)
    if end_a is None:
      continue
    end_b = _add_path(canvas, rng, origin_b, phi + rng.uniform(-math.pi / 2, math.pi / 2),
                      num_paddles, 2, max_turn)
    if end_b is None:
      continue
    tips = {1: (origin_a, end_a), 2: (origin_b, end_b)}
    if not all(canvas.disk_free(p, clearance, pid) for pid, pair in tips.items() for p in pair):
      continue
    for pair in tips.values():
      for p in pair:
        canvas.block_disk(p, clearance)
    for k in range(num_distractors):
      for _ in range(10):
        start = (rng.uniform(canvas.lo, canvas.hi), rng.uniform(canvas.lo, canvas.hi))
        if _add_path(canvas, rng, start, rng.uniform(-math.pi, math.pi), distractor_len, 3 + k,
                     max_turn) is not None:
          break
    marked = rng.choice((1, 2))
    far = tips[marked if label == 1 else 3 - marked][1]
    return Layout(canvas, (tips[marked][0], far), marked)
  raise RuntimeError(f"could not place two paths of {num_paddles} dashes in a {resolution}x{resolution} "
                     f"image after {max_attempts} attempts; use an easier difficulty or a larger resolution")


def draw_sample(rng: random.Random, label: int, resolution: int, num_paddles: int,
                max_turn_degrees: float = 30.0) -> np.ndarray:
  """One uint8[R, R] image whose markers are connected by one path iff ``label`` == 1."""
  return draw_layout(rng, label, resolution, num_paddles, max_turn_degrees).render()


class DistanceBalance:
  """Keeps the distance between the two markers uninformative about the label.

  Both target paths start side by side and grow apart, so a marker pair on different paths
  tends to lie further apart than the two ends of one (short) path: a shortcut a model could
  learn instead of tracing paths. The generator therefore accepts an image of class y whose
  marker distance falls in bin b only while class y leads class 1-y in that bin by fewer than
  ``slack`` images, so the two classes end up with the same distance histogram.
  """

  def __init__(self, bin_width: float, slack: int = 2):
    self.bin_width, self.slack = bin_width, slack
    self.counts: dict[tuple[int, int], int] = {}

  def accept(self, label: int, markers: tuple[Point, Point], force: bool = False) -> bool:
    (x1, y1), (x2, y2) = markers
    b = int(math.hypot(x2 - x1, y2 - y1) / self.bin_width)
    mine, theirs = self.counts.get((label, b), 0), self.counts.get((1 - label, b), 0)
    if mine - theirs >= self.slack and not force:
      return False
    self.counts[(label, b)] = mine + 1
    return True


def draw_balanced(rng: random.Random, label: int, balance: DistanceBalance, resolution: int,
                  num_paddles: int, max_turn_degrees: float = 30.0, max_draws: int = 200) -> np.ndarray:
  """An image of class ``label`` that ``balance`` accepts (after ``max_draws`` the last draw)."""
  for draw in range(max_draws):
    layout = draw_layout(rng, label, resolution, num_paddles, max_turn_degrees)
    if balance.accept(label, layout.markers, force=draw == max_draws - 1):
      return layout.render()
  raise AssertionError("unreachable: the last draw is always accepted")


def metadata_line(subdir: str, filename: str, index: int, label: int, opts: GeneratorOptions) -> str:
  """One metadata row in the release's field order: folder, file, index, label, then the
  generator settings (max turn, path length, distractor length, paddle length, thickness, margin,
  number of contrasts)."""
  geo = geometry_for(opts.resolution)
  length = CONTOUR_LENGTHS[opts.difficulty]
  fields = [subdir, filename, index, label, opts.max_turn_degrees, length, max(1, length // 3),
            geo.paddle_length, geo.thickness, geo.margin, 1]
  return " ".join(str(f) for f in fields) + "\n"


def _write_batch(folder: str, batch: int, count: int, opts: GeneratorOptions) -> int:
  """Draw and save images ``batch * images_per_batch ...`` and their metadata file; returns count."""
  rng = random.Random(f"pathfinder-{opts.seed}-{opts.resolution}-{opts.difficulty}-{batch}")
  subdir = f"imgs/{batch}"
  (Path(folder) / subdir).mkdir(parents=True, exist_ok=True)
  balance = DistanceBalance(bin_width=opts.resolution / 32)
  lines = []
  for k in range(count):
    label = rng.randrange(2)
    image = draw_balanced(rng, label, balance, opts.resolution, CONTOUR_LENGTHS[opts.difficulty],
                          opts.max_turn_degrees)
    filename = f"sample_{k}.png"
    Image.fromarray(image, mode="L").save(Path(folder) / subdir / filename, optimize=False)
    lines.append(metadata_line(subdir, filename, k, label, opts))
  (Path(folder) / "metadata" / f"{batch}.npy").write_text("".join(lines))
  return count


def generate(root: Path, opts: GeneratorOptions, workers: int = 0) -> Path:
  """Write ``root/pathfinder<R>/<difficulty dir>/`` (release layout) atomically; returns root.

  Batches are drawn in parallel by ``workers`` processes (0 = one per CPU); each batch has
  its own seed, so the images do not depend on the number of workers.
  """
  root.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=root.name + ".tmp"))
  folder = tmp / f"pathfinder{opts.resolution}" / DIFFICULTY_DIRS[opts.difficulty]
  (folder / "metadata").mkdir(parents=True)
  counts = [min(opts.images_per_batch, opts.num_images - start)
            for start in range(0, opts.num_images, opts.images_per_batch)]
  workers = min(workers or os.cpu_count() or 1, len(counts))
  if workers > 1:
    # spawn, not fork: the parent may hold JAX threads that a fork would copy mid-flight.
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn) as pool:
      list(pool.map(_write_batch, [str(folder)] * len(counts), range(len(counts)), counts,
                    [opts] * len(counts)))
  else:
    for batch, count in enumerate(counts):
      _write_batch(str(folder), batch, count, opts)
  try:
    os.replace(tmp, root)
  except OSError:  # another process finished first
    shutil.rmtree(tmp, ignore_errors=True)
  return root


# ----------------------------------------------------------------------------- reader

def parse_metadata(path: Path) -> list[tuple[str, str, int]]:
  """(image folder, file name, label) per row of one metadata file (text or np.save format)."""
  raw = path.read_bytes()
  if raw.startswith(NPY_MAGIC):
    try:
      table = np.load(path, allow_pickle=False)
    except ValueError as e:
      raise tasks.DataFormatError(
          f"{path}: a NumPy metadata file that needs pickle is not supported ({e})") from None
    rows = [[str(v.decode() if isinstance(v, bytes) else v) for v in np.atleast_2d(table)[i]]
            for i in range(len(np.atleast_2d(table)))]
    numbered = [(i + 1, row) for i, row in enumerate(rows)]
  else:
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError:
      raise tasks.DataFormatError(
          f"{path}: neither text lines nor a NumPy array; is this a Pathfinder metadata file?") from None
    numbered = [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
  entries = []
  for lineno, fields in numbered:
    if len(fields) < 4:
      raise tasks.DataFormatError(
          f"{path}:{lineno}: expected at least 4 space-separated fields (folder, file, index, label), "
          f"found {len(fields)}")
    if fields[3] not in ("0", "1"):
      raise tasks.DataFormatError(f"{path}:{lineno}: label (field 4) is {fields[3]!r}, not 0 or 1")
    entries.append((fields[0], fields[1], int(fields[3])))
  return entries


def difficulty_folder(root: Path, resolution: int, difficulty: str) -> Path:
  """``root/pathfinder<R>/<difficulty dir>`` (the release layout); a ``root`` that is already
  the ``pathfinder<R>`` folder (holding the difficulty folders) or the difficulty folder
  itself is accepted too."""
  sub = DIFFICULTY_DIRS[difficulty]
  candidates = [root / f"pathfinder{resolution}" / sub, root / sub, root]
  for folder in candidates:
    if folder.name == sub and (folder / "metadata").is_dir():
      return folder
  return candidates[0]


def metadata_files(folder: Path) -> list[Path]:
  files = list((folder / "metadata").glob("*.npy"))
  return sorted(files, key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem))


def read_image(path: Path, resolution: int) -> np.ndarray | None:
  """uint8[R*R] gray pixels, or None for an empty or undecodable file.

  8-bit gray PNGs (the release) are read as they are; 16-bit gray is scaled to 8 bits and
  colour is converted with the luma weights of ``_tokens.to_grayscale``.
  """
  try:
    if path.stat().st_size == 0:
      return None
    with Image.open(path) as img:
      img.load()
      if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.clip(np.rint(np.asarray(img, np.float64) / 257), 0, 255).astype(np.uint8)
      elif img.mode in ("RGB", "RGBA"):
        pixels = _tokens.to_grayscale(np.asarray(img.convert("RGB")))
      else:
        pixels = np.asarray(img.convert("L"))
  except (UnidentifiedImageError, OSError, SyntaxError):
    return None
  if pixels.shape != (resolution, resolution):
    raise tasks.DataFormatError(f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}, expected "
                                f"{resolution}x{resolution}; does data.resolution match the folder?")
  return pixels.reshape(-1)


def read_release(folder: Path, resolution: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
  """All images listed in ``folder/metadata/*.npy``: (uint8[M, R*R], int32[M], counts)."""
  pixels, labels = [], []
  counts = {"listed": 0, "unreadable": 0, "missing": 0}
  examples = {"unreadable": "", "missing": ""}
  for meta in metadata_files(folder):
    for subdir, filename, label in parse_metadata(meta):
      counts["listed"] += 1
      path = folder / subdir / filename
      if not path.is_file():
        counts["missing"] += 1
        examples["missing"] = examples["missing"] or f"{subdir}/{filename}"
        continue
      image = read_image(path, resolution)
      if image is None:
        counts["unreadable"] += 1
        examples["unreadable"] = examples["unreadable"] or f"{subdir}/{filename}"
        continue
      pixels.append(image)
      labels.append(label)
  if counts["unreadable"] or counts["missing"]:
    logging.warning("Pathfinder %s: skipped %d empty/unreadable image(s) (e.g. %s) and %d missing image(s) "
                    "(e.g. %s) of %d listed", folder, counts["unreadable"], examples["unreadable"] or "-",
                    counts["missing"], examples["missing"] or "-", counts["listed"])
  if not pixels:
    raise tasks.DataFormatError(f"{folder}: no readable images among the {counts['listed']} listed in "
                                f"{folder / 'metadata'}")
  counts["used"] = len(pixels)
  return np.stack(pixels), np.asarray(labels, np.int32), counts


def split_indices(num: int, seed: int) -> dict[str, np.ndarray]:
  """Seeded random 80/10/10 partition of ``range(num)`` (sorted indices per split)."""
  order = np.random.default_rng(seed).permutation(num)
  n_train = int(num * SPLIT_FRACTIONS[0])
  n_val = int(num * SPLIT_FRACTIONS[1])
  parts = {"train": order[:n_train], "validation": order[n_train:n_train + n_val],
           "test": order[n_train + n_val:]}
  return {k: np.sort(v) for k, v in parts.items()}


# ----------------------------------------------------------------------------- task protocol

def generator_options(config) -> GeneratorOptions:
  d = config.data
  return GeneratorOptions(resolution=d.resolution, difficulty=d.difficulty, num_images=d.num_images,
                          images_per_batch=d.images_per_batch, max_turn_degrees=d.max_turn_degrees,
                          seed=d.seed)


def data_folder(config) -> Path:
  """The difficulty folder to read: under ``data_dir``, or generated into the cache."""
  d = config.data
  if d.difficulty not in DIFFICULTY_DIRS:
    raise ValueError(f"unknown data.difficulty {d.difficulty!r}; valid: {', '.join(DIFFICULTY_DIRS)}")
  if config.data_dir:
    folder = difficulty_folder(Path(config.data_dir).expanduser(), d.resolution, d.difficulty)
    if not metadata_files(folder):
      raise tasks.MissingDataError(
          f"Pathfinder data not found: {folder / 'metadata'} holds no <batch>.npy files. {DOWNLOAD_HELP}.")
    return folder
  opts = generator_options(config)
  root = tasks.cache_root(config) / "pathfinder" / f"generated-{tasks.fingerprint(dataclasses.asdict(opts))}"
  folder = difficulty_folder(root, opts.resolution, opts.difficulty)
  if not metadata_files(folder):
    logging.info("Generating %d Pathfinder images into %s (%s)", opts.num_images, root, opts)
    generate(root, opts, workers=d.generator_workers)
  return folder


def spec(config) -> tasks.TaskSpec:
  r = config.data.resolution
  shape = check_image_config(config, (r, r))
  return tasks.TaskSpec(name="pathfinder", vocab_size=_tokens.VOCAB_SIZE, max_len=config.max_len,
                        num_classes=NUM_CLASSES, kind="single", image_shape=shape)


def load(split: str, config) -> dict[str, np.ndarray]:
  """Pixel ids of ``split``: inputs int32[M, R*R] (gray + 1), targets int32[M] (1 = connected)."""
  if split not in tasks.SPLITS:
    raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(tasks.SPLITS)}")
  r = config.data.resolution
  check_image_config(config, (r, r))
  folder = data_folder(config)
  key = tasks.fingerprint([tasks.file_fingerprint(p) for p in metadata_files(folder)], r,
                          config.data.split_seed, SPLIT_FRACTIONS)
  cache = tasks.tokenised_cache_dir(folder, config, "pathfinder")
  paths = {s: cache / f"{s}-{key}.npz" for s in tasks.SPLITS}
  if not paths[split].exists():  # one pass over the images writes all three splits
    pixels, labels, counts = read_release(folder, r)
    logging.info("Pathfinder %s: %s", folder, counts)
    for name, idx in split_indices(len(labels), config.data.split_seed).items():
      if not paths[name].exists():
        tasks.cached_arrays(paths[name], lambda idx=idx: {"pixels": pixels[idx], "targets": labels[idx]})
  with np.load(paths[split]) as arrays:
    return {"inputs": _tokens.pixel_ids(arrays["pixels"]), "targets": arrays["targets"]}
