"""Discrete wavelet transform along one axis in pure JAX, with PyWavelets' semantics.

``dwt``/``idwt`` (one level) and ``wavedec``/``waverec`` (several levels, coefficients in
PyWavelets order ``[cA_n, cD_n, ..., cD_1]``) give the same numbers as the functions of the
same name in PyWavelets (Lee et al. 2019, "PyWavelets: A Python package for wavelet
analysis", JOSS) for every discrete wavelet, every signal extension mode and every length,
with the same coefficient lengths (``dwt_coeff_len``) and level limits (``dwt_max_level``).
They are jit- and grad-friendly (also in the filters) and batched over every other axis.

Wavelets. ``wavelet`` is a PyWavelets name (``"haar"``, ``"db2"``, ``"sym4"``, ``"bior2.2"``,
``"dmey"``, ...), a ``pywt.Wavelet`` or a ``filters.FilterBank`` of four filters, each of shape
[L] or [L, C]. Per-channel filters [L, C] filter channel c of the signal with column c: the
channel axis is the LAST axis of ``x`` (size C) and the transform axis must be another one;
e.g. x: [B, N, D] with axis=1 and filters [L, D].

Definitions (a single level, filter h of even length L, signal x of length n along ``axis``).
Let xe be x extended at both ends by the boundary ``mode``. Analysis keeps every second
sample of the full convolution:

    c[o] = sum_j h[j] xe(2o + 1 - j),     o = 0 .. dwt_coeff_len(n, L, mode) - 1,

with xe(t) = x[t] for 0 <= t < n and, outside, (PyWavelets' ``pywt.Modes``)

    zero           0
    constant       x[0] on the left, x[n-1] on the right
    symmetric      half-sample mirror  ... x1 x0 | x0 x1 ... x_{n-1} | x_{n-1} x_{n-2} ...
    reflect        whole-sample mirror ... x2 x1 | x0 x1 ... x_{n-1} | x_{n-2} x_{n-3} ...
    periodic       period n
    smooth         linear extrapolation of the two end samples
    antisymmetric  half-sample mirror with a sign flip
    antireflect    whole-sample point reflection about the end sample
    periodization  x made even-length by repeating x[n-1] once, then periodic; and the
                   alignment shifts to c[o] = sum_j h[j] xe(2o + L/2 - j), ceil(n/2) outputs.

Extensions longer than the signal repeat the mirror/period as PyWavelets does. Synthesis is
the transposed (upsampling) convolution y(t) = sum_k f[t - 2k] c[k], of which ``idwt``
keeps the window t = L-2 .. 2m-1 (2m - L + 2 samples for m coefficients), or for
periodization treats c as periodic and keeps t = L/2-1 .. L/2+2m-2 (2m samples).
``waverec`` drops the last sample of an approximation that is one longer than the next
detail band, exactly like ``pywt.waverec``.

Implementation. The extension only gathers the few boundary samples (a static index/weight
plan) and concatenates them to x; the extended signal is split into its even and odd samples
(polyphase) and each band is a sum of L contiguous slices of those times the filter taps
(synthesis: two such sums of L/2 slices, one per output phase, then interleaved), i.e.
O(n * L) multiply-adds per channel with no loop over the sequence, which XLA fuses into few
passes over the data. The extrapolating modes (smooth, antireflect) extend with samples that
grow far from the edge, and deep levels compound this (cA's edge reaches ~1000x the signal
for a 76-tap filter at level 3); so for fixed filters their boundary outputs are recomputed
from exact float64 maps of the edge samples and slopes, which keeps float32 within 3e-6 of
the largest coefficient where summing taps times the extension was 6e-5 off. Low-precision
inputs are filtered in float32 and returned in their dtype.
The shifted-slice sums carry a hand-written VJP (the same kind of sum on the cotangent, and
per-tap reductions for the filters): XLA's own transpose of many overlapping slices of one
array runs about ten times slower on CPU. Hence reverse mode (grad, vjp, jacrev, also nested)
is supported and forward mode (jvp, jacfwd) is not.
"""

from __future__ import annotations

import functools
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lra_wavelet.wavelets import filters as _filters
from lra_wavelet.wavelets.filters import FilterBank

MODES = ("zero", "constant", "symmetric", "periodic", "smooth", "periodization", "reflect",
         "antisymmetric", "antireflect")


def check_mode(mode: str) -> str:
  """``mode`` if it is one of ``MODES``, else ValueError."""
  if mode not in MODES:
    raise ValueError(f"unknown signal extension mode {mode!r}; use one of {', '.join(MODES)}")
  return mode


def _filter_length(wavelet) -> int:
  if isinstance(wavelet, (int, np.integer)):
    return int(wavelet)
  return _filters.filter_bank(wavelet).length


def dwt_max_level(data_len: int, filter_len) -> int:
  """Deepest useful level, ``floor(log2(data_len / (filter_len - 1)))`` (0 if shorter), as
  ``pywt.dwt_max_level``; ``filter_len`` is a length or anything ``wavelet`` accepts."""
  filter_len = _filter_length(filter_len)
  if filter_len < 2:
    raise ValueError(f"filter length must be >= 2; got {filter_len}")
  if data_len < filter_len - 1:
    return 0
  return (data_len // (filter_len - 1)).bit_length() - 1


def dwt_coeff_len(data_len: int, filter_len, mode: str = "periodization") -> int:
  """Length of each band of one ``dwt`` level, as ``pywt.dwt_coeff_len``."""
  filter_len = _filter_length(filter_len)
  if data_len < 1 or filter_len < 1:
    raise ValueError(f"data_len and filter_len must be >= 1; got {data_len}, {filter_len}")
  if check_mode(mode) == "periodization":
    return (data_len + 1) // 2
  return (data_len + filter_len - 1) // 2


def idwt_len(coeff_len: int, filter_len, mode: str = "periodization") -> int:
  """Length of the ``idwt`` output of two bands of ``coeff_len`` coefficients."""
  filter_len = _filter_length(filter_len)
  if check_mode(mode) == "periodization":
    return 2 * coeff_len
  return 2 * coeff_len - filter_len + 2


def wavedec_lengths(data_len: int, wavelet, level: int | None = None,
                    mode: str = "periodization") -> list[int]:
  """Band lengths of ``wavedec`` in PyWavelets order [len cA_n, len cD_n, ..., len cD_1]."""
  filter_len = _filter_length(wavelet)
  level = _check_level(data_len, filter_len, level)
  lengths, n = [], data_len
  for _ in range(level):
    n = dwt_coeff_len(n, filter_len, mode)
    lengths.append(n)
  return [n] + lengths[::-1] if level else [data_len]


def _check_level(data_len: int, filter_len: int, level: int | None) -> int:
  max_level = dwt_max_level(data_len, filter_len)
  if level is None:
    return max_level
  if level < 0:
    raise ValueError(f"level must be >= 0; got {level}")
  if level > max_level:
    warnings.warn(f"level {level} is above dwt_max_level={max_level} for length {data_len} and "
                  f"filter length {filter_len}: all coefficients see the boundary", stacklevel=3)
  return level


# --- boundary extension ---------------------------------------------------------------------


# Keys of the end slopes in ``_source`` terms: x[0] - x[1] and x[n-1] - x[n-2].
LEFT_SLOPE, RIGHT_SLOPE = "left slope", "right slope"


def _slope_samples(key: str, n: int) -> list[tuple[int, float]]:
  """An end slope of ``_source`` as samples [(index, weight), ...]."""
  return [(0, 1.0), (1, -1.0)] if key == LEFT_SLOPE else [(n - 1, 1.0), (n - 2, -1.0)]


def _source(t: int, n: int, mode: str) -> list[tuple[int | str, float]]:
  """xe(t) as a linear combination [(key, weight), ...] of x[0..n-1] (see module doc).

  A key is a sample index, or for ``smooth`` one of the end slopes LEFT_SLOPE / RIGHT_SLOPE:
  xe(t) = x[0] + |t| (x[0] - x[1]) left of the signal, kept in this form so that exact
  boundary maps (``_boundary_maps``) never subtract two large multiples of x[0] and x[1].
  """
  if 0 <= t < n:
    return [(t, 1.0)]
  if mode == "zero":
    return []
  if mode == "constant" or (n == 1 and mode in ("smooth", "reflect", "antireflect")):
    return [(min(max(t, 0), n - 1), 1.0)]
  if mode == "periodic":
    return [(t % n, 1.0)]
  if mode == "periodization":
    return [(min(t % (n + n % 2), n - 1), 1.0)]
  if mode in ("symmetric", "antisymmetric"):
    u = t % (2 * n)
    sign = -1.0 if mode == "antisymmetric" else 1.0
    return [(u, 1.0)] if u < n else [(2 * n - 1 - u, sign)]
  if mode == "reflect":
    u = t % (2 * n - 2)
    return [(u if u < n else 2 * n - 2 - u, 1.0)]
  if mode == "smooth":
    if t < 0:
      return [(0, 1.0), (LEFT_SLOPE, float(-t))]
    return [(n - 1, 1.0), (RIGHT_SLOPE, float(t - n + 1))]
  if mode == "antireflect":
    # Point reflections about x[0] and x[n-1]; their product is a shift by P = 2(n-1) that adds
    # 2(x[n-1] - x[0]) per period.
    period = 2 * (n - 1)
    q, r = divmod(t, period)
    terms = [(r, 1.0)] if r < n else [(n - 1, 2.0), (period - r, -1.0)]
    return terms + [(n - 1, 2.0 * q), (0, -2.0 * q)]
  raise ValueError(f"unknown signal extension mode {mode!r}")


@functools.lru_cache(maxsize=1024)
def _extension_plan(n: int, positions: tuple[int, ...], mode: str, support: bool):
  """Static gather plan for xe at ``positions``: (index [R, T], weight [R, T]) numpy arrays.

  With ``support`` the weights become 1 wherever xe(t) depends on x[index] (for masks).
  """
  rows = []
  for t in positions:
    acc: dict[int, float] = {}
    for key, w in _source(t, n, mode):
      for i, unit in ([(key, 1.0)] if isinstance(key, int) else _slope_samples(key, n)):
        acc[i] = acc.get(i, 0.0) + w * unit
    rows.append([(i, w) for i, w in acc.items() if w != 0.0])
  width = max([len(r) for r in rows] + [1])
  index = np.zeros((len(rows), width), np.int32)
  weight = np.zeros((len(rows), width), np.float64)
  for r, terms in enumerate(rows):
    for c, (i, w) in enumerate(terms):
      index[r, c] = i
      weight[r, c] = 1.0 if support else w
  return index, weight


def _take(x: jax.Array, index: np.ndarray, axis: int) -> jax.Array:
  """x[index] along ``axis`` for a static index: runs of consecutive (ascending or descending)
  indices become slices (XLA fuses slices into consumers far better than gathers)."""
  parts, start = [], 0
  while start < len(index):
    stop, step = start + 1, 0
    if stop < len(index) and abs(int(index[stop]) - int(index[start])) == 1:
      step = int(index[stop]) - int(index[start])
      while stop < len(index) and int(index[stop]) - int(index[stop - 1]) == step:
        stop += 1
    lo, hi = sorted((int(index[start]), int(index[stop - 1])))
    part = jax.lax.slice_in_dim(x, lo, hi + 1, axis=axis)
    parts.append(jnp.flip(part, axis=axis) if step < 0 else part)
    start = stop
  return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=axis)


def _gather(x: jax.Array, positions: range, mode: str, axis: int, support: bool) -> jax.Array:
  """xe(t) for t in ``positions`` (a short range outside or around the signal)."""
  n = x.shape[axis]
  index, weight = _extension_plan(n, tuple(positions), mode, support)
  shape = [1] * x.ndim
  shape[axis] = len(positions)
  out = None
  for c in range(index.shape[1]):
    if not weight[:, c].any():
      continue
    term = _take(x, index[:, c], axis) * weight[:, c].reshape(shape).astype(x.dtype)
    out = term if out is None else out + term
  if out is None:
    out_shape = list(x.shape)
    out_shape[axis] = len(positions)
    out = jnp.zeros(out_shape, x.dtype)
  return out


def _extend(x: jax.Array, left: int, right: int, mode: str, axis: int, support: bool = False):
  """xe(t) for t = -left .. n+right-1 along ``axis``."""
  n = x.shape[axis]
  parts = []
  if left > 0:
    parts.append(_gather(x, range(-left, 0), mode, axis, support))
  parts.append(x)
  if right > 0:
    parts.append(_gather(x, range(n, n + right), mode, axis, support))
  return jnp.concatenate(parts, axis=axis) if len(parts) > 1 else x


# --- filtering ------------------------------------------------------------------------------


def _prepare(x: jax.Array, bank: FilterBank, axis: int):
  """Normalise axis, pick the compute dtype, cast filters; checks per-channel shapes."""
  x = jnp.asarray(x)
  axis = axis + x.ndim if axis < 0 else axis
  if not 0 <= axis < x.ndim:
    raise ValueError(f"axis {axis} is out of range for an array of shape {x.shape}")
  c = _filters.channels(bank)
  if c is not None:
    if axis == x.ndim - 1:
      raise ValueError("per-channel filters [L, C] filter the LAST axis as channels: transform "
                       "along another axis (e.g. x [B, N, C] with axis=1)")
    if x.shape[-1] != c:
      raise ValueError(f"per-channel filters have C={c} channels but the last axis of x has size "
                       f"{x.shape[-1]}")
  dtype = jnp.promote_types(x.dtype, jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) \
      else jnp.float32
  bank = FilterBank(*(f.astype(dtype) if isinstance(f, jax.Array) else np.asarray(f, dtype)
                      for f in bank))
  out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else dtype
  return x.astype(dtype), bank, axis, out_dtype


def _taps(f) -> list[int]:
  """Indices of taps to use: all for JAX filters, the nonzero ones for fixed numpy filters."""
  if isinstance(f, jax.Array):
    return list(range(f.shape[0]))
  return [j for j in range(f.shape[0]) if np.any(f[j] != 0)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _shift_sum(x: jax.Array, f: jax.Array, terms: tuple[tuple[int, int], ...], count: int,
               axis: int) -> jax.Array:
  """sum over (j, s) in ``terms`` of f[j] * x[s : s + count] along ``axis`` (unit stride).

  f: [L] (one tap per j, each j at most once) or [L, C] (a tap vector broadcast along the
  last axis of x). The hand-written VJP is the same kind of sum on the zero-padded cotangent
  (XLA's own transpose of slices into pads of a shared input is an order of magnitude slower
  on CPU).
  """
  shape = list(x.shape)
  shape[axis] = count
  out = jnp.zeros(shape, x.dtype)
  for j, s in terms:
    out = out + jax.lax.slice_in_dim(x, s, s + count, axis=axis) * f[j]
  return out


def _materialize(x: jax.Array) -> jax.Array:
  """x, computed into its own buffer: an XLA fusion boundary, used between wavedec levels.

  Without it XLA (CPU) fuses the L-term sum of shifted slices that makes a level's
  approximation into the next level's analysis, which reads it at L shifts, and recomputes it
  once per tap (4x slower at L=40). Multiplies and adds count as cheap, so XLA's reuse check
  does not stop it, and optimization_barrier is removed before fusion on CPU. A two-step loop
  that passes x through is kept (one-step loops are inlined). It costs a few ms per level at
  [4096, 512], so single-level transforms and the inverse (whose levels start from an
  interleave that XLA does not fuse the same way) go without. Analysis directly followed by
  synthesis (a transform round trip with nothing in between) still fuses this way; in WavSpA
  the inner mixer's matmuls sit in between.
  """
  return jax.lax.scan(lambda carry, _: (x, None), jnp.zeros_like(x), None, length=2)[0]


def _shift_sum_fwd(x, f, terms, count, axis):
  return _shift_sum(x, f, terms, count, axis), (x, f)


def _shift_sum_bwd(terms, count, axis, res, g):
  x, f = res
  n = x.shape[axis]
  if not terms:
    return jnp.zeros_like(x), jnp.zeros_like(f)
  left = max(s for _, s in terms)
  right = n - count - min(s for _, s in terms)
  pad = [(0, 0)] * g.ndim
  pad[axis] = (left, right)
  gx = _shift_sum(jnp.pad(g, pad), f, tuple((j, left - s) for j, s in terms), n, axis)
  # d/df[j] = sum of g * x[s_j : s_j + count] (over all axes but the channel axis of [L, C]
  # filters). A scan runs one reduction at a time: XLA CPU fuses sibling reductions of the
  # unrolled form into one kernel that is ~10x slower.
  reduce_axes = tuple(range(g.ndim - 1)) if f.ndim == 2 else tuple(range(g.ndim))

  def tap(carry, start):
    part = jax.lax.dynamic_slice_in_dim(x, start, count, axis=axis)
    return carry, jnp.sum(g * part, axis=reduce_axes)

  _, per_term = jax.lax.scan(tap, None, jnp.asarray([s for _, s in terms], jnp.int32))
  gf = jnp.zeros_like(f).at[np.asarray([j for j, _ in terms])].add(per_term.astype(f.dtype))
  return gx, gf


_shift_sum.defvjp(_shift_sum_fwd, _shift_sum_bwd)


def _analysis(x: jax.Array, bank: FilterBank, mode: str, axis: int, support: bool):
  n = x.shape[axis]
  length = bank.length
  count = dwt_coeff_len(n, length, mode)
  if mode == "periodization":
    # c[o] = sum_j h[j] xe(2o + L/2 - j): t runs from 1 - L/2 to 2(count-1) + L/2.
    left, shift = length - 1 - length // 2, length // 2
  else:
    # c[o] = sum_j h[j] xe(2o + 1 - j): t runs from 2 - L to 2 count - 1.
    left, shift = length - 2, 1
  right = 2 * (count - 1) + shift - (n - 1)
  right += (left + n + right) % 2  # even total length for the polyphase split
  xe = _extend(x, left, right, mode, axis, support)
  # Polyphase: xe(2o + S - j) is phase (S - j) % 2 at index o + (S - j) // 2.
  shape = list(xe.shape)
  shape[axis:axis + 1] = [shape[axis] // 2, 2]
  phases = [jax.lax.index_in_dim(xe.reshape(shape), p, axis + 1, keepdims=False) for p in (0, 1)]
  start = shift + left
  out = []
  for f in (bank.dec_lo, bank.dec_hi):
    taps = _taps(f)
    fj = jnp.asarray(f)
    band = None
    for p in (0, 1):
      terms = tuple((j, (start - j) // 2) for j in taps if (start - j) % 2 == p)
      if terms:
        part = _shift_sum(phases[p], fj, terms, count, axis)
        band = part if band is None else band + part
    if band is None:
      band = jnp.zeros(phases[0].shape[:axis] + (count,) + phases[0].shape[axis + 1:], xe.dtype)
    if mode in _EXTRAPOLATING_MODES and not support and isinstance(f, np.ndarray) and f.ndim == 1:
      band = _exact_boundary(band, x, f, shift, mode, axis)
    out.append(band)
  return tuple(out)


# Modes whose extension extrapolates: far from the edge, xe(t) grows like |t| times the end
# slope, so summing filter taps times xe in the working precision loses digits to cancellation.
_EXTRAPOLATING_MODES = ("smooth", "antireflect")


@functools.lru_cache(maxsize=1024)
def _boundary_maps(n: int, count: int, taps: tuple[float, ...], shift: int, mode: str):
  """Analysis outputs whose window reaches past either end, as exact float64 maps.

  Output o is c[o] = sum_j h[j] xe(2o + shift - j). Folding ``_source`` into the taps gives
  c[o] = sum_i W[o, i] x[i] + S[o] . (left slope, right slope), computed here in float64, so
  the working precision only rounds terms of the size of the samples and slopes themselves.
  Returns (left rows, W_left [left, K_left] on x[:K_left], S_left [left, 2], right rows,
  W_right [right, K_right] on x[n - K_right:], S_right [right, 2]); left + right may cover
  all ``count`` outputs (short signals).
  """
  length = len(taps)
  left = min(count, max(0, -(-(length - 1 - shift) // 2)))
  right = min(count - left, max(0, count - 1 - (n - 1 - shift) // 2))
  slope_column = {LEFT_SLOPE: n, RIGHT_SLOPE: n + 1}

  def rows(outputs):
    w = np.zeros((len(outputs), n + 2))
    for r, o in enumerate(outputs):
      for j, h in enumerate(taps):
        for key, weight in _source(2 * o + shift - j, n, mode):
          w[r, key if isinstance(key, int) else slope_column[key]] += h * weight
    return w[:, :n], w[:, n:]

  (w_left, s_left), (w_right, s_right) = rows(range(left)), rows(range(count - right, count))
  used_left, used_right = np.flatnonzero(w_left.any(0)), np.flatnonzero(w_right.any(0))
  k_left = int(used_left.max()) + 1 if used_left.size else 0
  k_right = n - int(used_right.min()) if used_right.size else 0
  return left, w_left[:, :k_left], s_left, right, w_right[:, n - k_right:], s_right


def _exact_boundary(band: jax.Array, x: jax.Array, f: np.ndarray, shift: int, mode: str,
                    axis: int) -> jax.Array:
  """``band`` with its outputs near either end recomputed from ``_boundary_maps``."""
  n, count = x.shape[axis], band.shape[axis]
  left, w_left, s_left, right, w_right, s_right = _boundary_maps(
      n, count, tuple(float(v) for v in f), shift, mode)

  def sample(i):
    return jax.lax.index_in_dim(x, i, axis, keepdims=True)

  def product(matrix, operand):  # [R, K] on operand [..., K, ...] along axis -> [..., R, ...]
    y = jnp.tensordot(jnp.asarray(matrix, x.dtype), operand, axes=[[1], [axis]],
                      precision=jax.lax.Precision.HIGHEST)
    return jnp.moveaxis(y, 0, axis)

  def apply(w, part, s):  # plus [R, 2] on the end slopes, which only exist for n >= 2
    if not s.any():
      return product(w, part)
    slopes = jnp.concatenate([sample(0) - sample(1), sample(n - 1) - sample(n - 2)], axis=axis)
    return product(w, part) + product(s, slopes)

  parts = []
  if left:
    parts.append(apply(w_left, jax.lax.slice_in_dim(x, 0, w_left.shape[1], axis=axis), s_left))
  parts.append(jax.lax.slice_in_dim(band, left, count - right, axis=axis))
  if right:
    part = jax.lax.slice_in_dim(x, n - w_right.shape[1], n, axis=axis)
    parts.append(apply(w_right, part, s_right))
  return jnp.concatenate(parts, axis=axis) if len(parts) > 1 else parts[0]


def _synthesis(c: jax.Array, f, mode: str, axis: int) -> jax.Array:
  """One band's contribution to ``idwt``: y(2i + p) for the kept window (module doc)."""
  m = c.shape[axis]
  length = f.shape[0]
  half = length // 2
  fj = jnp.asarray(f)
  phases = []
  for p in (0, 1):
    if mode == "periodization":
      # y(n) with n = 2i + p and t = n + L/2 - 1: taps of parity q = (p + L/2 - 1) % 2,
      # y = sum_j f[2j+q] c[(i - j + off) mod m].
      q = (p + half - 1) % 2
      off = (p + half - 1 - q) // 2
      ce = _extend(c, half, half, "periodic", axis)
      starts = {2 * j + q: off + half - j for j in range(half)}
      count = m
    else:
      # y(2i + p + L - 2) = sum_j f[2j+p] c[i + L/2 - 1 - j].
      q, ce = p, c
      starts = {2 * j + p: half - 1 - j for j in range(half)}
      count = m - half + 1
    terms = tuple((j, starts[j]) for j in _taps(f) if j % 2 == q)
    phases.append(_shift_sum(ce, fj, terms, count, axis))
  y = jnp.stack(phases, axis=axis + 1)
  shape = list(phases[0].shape)
  shape[axis] *= 2
  return y.reshape(shape)


# --- public API -----------------------------------------------------------------------------


def dwt(x: jax.Array, wavelet, mode: str = "periodization", axis: int = -1):
  """One level: (cA, cD) along ``axis``, as ``pywt.dwt``. x: any shape, n = x.shape[axis]."""
  bank = _filters.filter_bank(wavelet)
  x, bank, axis, out_dtype = _prepare(x, bank, axis)
  lo, hi = _analysis(x, bank, check_mode(mode), axis, False)
  return lo.astype(out_dtype), hi.astype(out_dtype)


def idwt(cA: jax.Array | None, cD: jax.Array | None, wavelet, mode: str = "periodization",
         axis: int = -1) -> jax.Array:
  """Inverse of one level, as ``pywt.idwt``; a band given as None counts as zeros.

  cA and cD must have the same shape; the output has ``idwt_len(m, L, mode)`` samples along
  ``axis`` (2m for periodization, 2m - L + 2 otherwise).
  """
  if cA is None and cD is None:
    raise ValueError("idwt needs at least one of cA and cD")
  bank = _filters.filter_bank(wavelet)
  mode = check_mode(mode)
  ref = cA if cA is not None else cD
  if cA is not None and cD is not None and jnp.shape(cA) != jnp.shape(cD):
    raise ValueError(f"cA and cD must have the same shape; got {jnp.shape(cA)} and {jnp.shape(cD)}")
  ref, bank, axis, out_dtype = _prepare(ref, bank, axis)
  m = ref.shape[axis]
  if mode != "periodization" and m < bank.length // 2:
    raise ValueError(f"{m} coefficients are too few for filter length {bank.length} in mode "
                     f"{mode!r}: use the wavelet and mode of the decomposition")
  out = None
  for band, f in ((cA, bank.rec_lo), (cD, bank.rec_hi)):
    if band is not None:
      y = _synthesis(jnp.asarray(band).astype(ref.dtype), f, mode, axis)
      out = y if out is None else out + y
  return out.astype(out_dtype)


def wavedec(x: jax.Array, wavelet, level: int | None = None, mode: str = "periodization",
            axis: int = -1) -> list[jax.Array]:
  """Multilevel decomposition [cA_n, cD_n, ..., cD_1] along ``axis``, as ``pywt.wavedec``.

  ``level`` None means ``dwt_max_level``; a level above it warns (like PyWavelets).
  """
  bank = _filters.filter_bank(wavelet)
  mode = check_mode(mode)
  x, bank, axis, out_dtype = _prepare(x, bank, axis)
  level = _check_level(x.shape[axis], bank.length, level)
  details = []
  a = x
  for i in range(level):
    a, d = _analysis(_materialize(a) if i else a, bank, mode, axis, False)
    details.append(d.astype(out_dtype))
  return [a.astype(out_dtype)] + details[::-1]


def waverec(coeffs: Sequence[jax.Array | None], wavelet, mode: str = "periodization",
            axis: int = -1) -> jax.Array:
  """Multilevel reconstruction from [cA_n, cD_n, ..., cD_1], as ``pywt.waverec``.

  An approximation one sample longer than the next detail band loses its last sample (this
  happens for odd lengths); any other length mismatch raises ValueError. The result has
  ``idwt_len`` of the last level (even for periodization: crop to the original length).
  """
  if not isinstance(coeffs, (list, tuple)) or len(coeffs) < 1:
    raise ValueError("waverec expects a non-empty list of coefficient arrays [cA_n, cD_n, ..., cD_1]")
  a, details = coeffs[0], coeffs[1:]
  if not details:
    return a
  ndim = jnp.ndim(a if a is not None else details[0])
  ax = axis + ndim if axis < 0 else axis
  for d in details:
    if a is not None and d is not None:
      la, ld = jnp.shape(a)[ax], jnp.shape(d)[ax]
      if la == ld + 1:
        a = jax.lax.slice_in_dim(a, 0, ld, axis=ax)
      elif la != ld:
        raise ValueError(f"coefficient shape mismatch: approximation of length {la} before a "
                         f"detail band of length {ld}")
    a = idwt(a, d, wavelet, mode, axis)
  return a


def correlate(x: jax.Array, taps, offsets: Sequence[int], count: int, mode: str = "constant",
              axis: int = -1) -> jax.Array:
  """y[i] = sum_k taps[k] * xe(i + offsets[k]) for i = 0 .. count-1 along ``axis``.

  xe is x extended by ``mode`` (module doc), so offsets and count may reach past either end.
  taps: [K] or [K, C] (per channel, the channel axis being the last axis of x). Used by the
  lifting transforms (``learnable.py``); same fused shifted-slice kernel as the DWT.
  """
  x = jnp.asarray(x)
  axis = axis + x.ndim if axis < 0 else axis
  mode = check_mode(mode)
  if len(offsets) != jnp.shape(taps)[0]:
    raise ValueError(f"correlate needs one offset per tap; got {len(offsets)} offsets for "
                     f"{jnp.shape(taps)[0]} taps")
  n = x.shape[axis]
  left = max(0, -min(offsets))
  right = max(0, count - 1 + max(offsets) - (n - 1))
  xe = _extend(x, left, right, mode, axis)
  terms = tuple((k, off + left) for k, off in enumerate(offsets))
  return _shift_sum(xe, jnp.asarray(taps, xe.dtype), terms, count, axis)


def wavedec_support(valid: jax.Array, wavelet, level: int | None = None,
                    mode: str = "periodization", axis: int = -1) -> list[jax.Array]:
  """Which ``wavedec`` coefficients depend on a True entry of ``valid`` (same layout/order).

  A coefficient is True iff the support of its basis function (through the boundary extension
  and every level of the cascade) contains a position where ``valid`` is True. Supports are
  structural: taps of fixed filters that are exactly zero (PyWavelets pads odd biorthogonal
  filters) do not count, every tap of a JAX (learnable) filter counts whatever its value, and
  per-channel filters count a tap that is nonzero in any channel, so ``valid`` has no channel
  axis (e.g. valid [B, N] for x [B, N, D], axis=1).
  """
  bank = FilterBank(*(np.ones(f.shape[:1]) if isinstance(f, jax.Array)
                      else (np.abs(np.asarray(f)) > 0).reshape(f.shape[0], -1).any(1).astype(np.float64)
                      for f in _filters.filter_bank(wavelet)))
  mode = check_mode(mode)
  x, bank, axis, _ = _prepare(jnp.asarray(valid).astype(jnp.float32), bank, axis)
  level = _check_level(x.shape[axis], bank.length, level)
  details, a = [], x
  for _ in range(level):
    a, d = _analysis(a, bank, mode, axis, True)
    details.append(d > 0)
    a = (a > 0).astype(x.dtype)
  return [a > 0] + details[::-1]
