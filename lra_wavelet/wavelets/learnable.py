"""Wavelet transforms of token sequences for WavSpA, fixed and learnable (REFERENCES.md §1).

WavSpA (Zhuang et al. 2023, "WavSpA: Wavelet Space Attention for Boosting Transformers'
Long Sequence Learning Ability") moves attention into wavelet space; its learnable variants
are the transforms here. Every transform is an NNX module acting on x: [B, N, D] along the
sequence axis (axis 1) with the same interface:

    forward(x, mask=None) -> [band_0, ..., band_J]   bands [B, n_b, D], PyWavelets order
                                                     [cA_J, cD_J, ..., cD_1]; a given mask
                                                     (bool [B, N], True = token) zeroes the
                                                     padded positions first
    band_masks(mask)      -> [bool [B, n_b], ...]    True where a coefficient's support
                                                     touches a real token (see below)
    inverse(bands, length) -> x [B, length, D]

Transforms (``build_transform`` by name):

- ``FixedWavelet``: any PyWavelets discrete wavelet (``"db2"``, ...) through
  ``lra_wavelet.wavelets.dwt`` (boundary ``mode``, default periodization).
- ``AdaptiveWavelet`` (AdaWavSpA, "ada"): a learnable low-pass analysis filter per channel,
  ``dec_lo`` [wlen, D], initialised to db(wlen/2); the other three filters follow from it by
  the quadrature-mirror relations (``filters.qmf_bank_from_lowpass``), the same bank at every
  level. Nothing keeps the bank orthogonal during training, so ``inverse(forward(x))`` is exact
  at initialisation only.
- ``OrthogonalWavelet`` (OrthoWavSpA, "ortho"): wlen/2 lattice angles per channel
  (``filters.lattice_lowpass``: plane rotations separated by delays) give an orthonormal
  low-pass filter for every value of the angles, and the QMF relations complete the bank, so
  the transform is orthogonal and ``inverse(forward(x)) == x`` for every parameter value
  (with any boundary mode; periodization keeps the band lengths at N/2). Initialised at the
  lattice factorisation of db(wlen/2): exact to rounding up to wlen 24, a nearby orthonormal
  filter beyond that (the factorisation of long Daubechies filters is ill-conditioned).
- ``LiftingWavelet`` (LiftWavSpA, "lift"): the LeGall 5/3 lifting scheme (Sweldens 1996,
  "The lifting scheme"): split x into even e and odd o samples, predict
  ``d[n] = o[n] - (e[n] + e[n+1]) / 2``, update ``s[n] = e[n] + (d[n-1] + d[n]) / 4``,
  recurse on s. Out-of-range neighbours repeat the end sample (``e[n+1]`` past the end is the
  last e, ``d[-1]`` is ``d[0]``, and for odd lengths the missing last d is the last d), which
  is the whole-sample symmetric extension of JPEG 2000. Odd lengths give ceil(N/2) s and
  floor(N/2) d.
- ``LiftingWavelet(learned=True)`` ("adalift"): predict and update become small learned
  per-channel correlations over a window of ``wlen`` neighbours,
  ``P(e) = corr(e, w) + a * silu(corr(e, v))`` (likewise U on d), initialised to the 5/3
  taps with a = 0. Lifting steps only add a function of the other half, so the inverse
  subtracts the same function: exactly invertible for every parameter value.

Band masks. A coefficient is valid iff the support of the basis function that produces it
contains at least one real token, followed through the boundary extension and every level
(``dwt.wavedec_support``; for lifting, through the predict/update windows). A coefficient
that only sees padding is zero once padded positions are zeroed, and masking it keeps an
attention layer in coefficient space from attending to it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lra_wavelet.wavelets import dwt, filters

LEARNABLE = ("ada", "ortho", "lift", "adalift")
_DEFAULT_WLEN = {"ada": 16, "ortho": 16, "adalift": 4}


def _zero_padding(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  if mask is None:
    return x
  return jnp.where(mask[..., None].astype(bool), x, jnp.zeros((), x.dtype))


def _check_wlen(wlen: int, what: str) -> int:
  if not isinstance(wlen, (int, np.integer)) or wlen < 2 or wlen % 2:
    raise ValueError(f"{what} needs an even wlen >= 2; got {wlen!r}")
  return int(wlen)


def _daubechies_lowpass(wlen: int) -> np.ndarray:
  if wlen // 2 > 38:
    raise ValueError(f"wlen={wlen} has no Daubechies initialisation (PyWavelets goes up to db38, "
                     f"wlen 76); use a smaller wlen")
  return np.asarray(filters.filter_bank(f"db{wlen // 2}").dec_lo)


class _FilterBankTransform(nnx.Module):
  """Shared forward/inverse/band_masks of the transforms defined by a filter bank."""

  levels: int
  mode: str

  def bank(self) -> filters.FilterBank:
    raise NotImplementedError

  def forward(self, x: jax.Array, mask: jax.Array | None = None) -> list[jax.Array]:
    """x: [B, N, D] -> bands [B, n_b, D], [cA_J, cD_J, ..., cD_1]."""
    return dwt.wavedec(_zero_padding(x, mask), self.bank(), level=self.levels, mode=self.mode, axis=1)

  def inverse(self, bands: list[jax.Array], length: int) -> jax.Array:
    """bands [B, n_b, D] -> x [B, length, D]."""
    x = dwt.waverec(list(bands), self.bank(), mode=self.mode, axis=1)
    return x[:, :length]

  def band_masks(self, mask: jax.Array) -> list[jax.Array]:
    """mask bool [B, N] -> bool [B, n_b] per band (module doc)."""
    return dwt.wavedec_support(mask, self.bank(), level=self.levels, mode=self.mode, axis=1)


class FixedWavelet(_FilterBankTransform):
  """A PyWavelets wavelet by name, no parameters."""

  def __init__(self, name: str, *, levels: int = 1, mode: str = "periodization"):
    filters.filter_bank(name)  # validates the name
    self.name = name
    self.levels = levels
    self.mode = dwt.check_mode(mode)

  def bank(self) -> filters.FilterBank:
    return filters.filter_bank(self.name)


class AdaptiveWavelet(_FilterBankTransform):
  """AdaWavSpA: learnable per-channel low-pass ``dec_lo`` [wlen, D] plus QMF (module doc)."""

  def __init__(self, *, dim: int, wlen: int = 16, levels: int = 1, mode: str = "periodization"):
    wlen = _check_wlen(wlen, "the adaptive wavelet")
    h = _daubechies_lowpass(wlen)
    self.dec_lo = nnx.Param(jnp.asarray(np.tile(h[:, None], (1, dim)), jnp.float32))
    self.levels = levels
    self.mode = dwt.check_mode(mode)

  def bank(self) -> filters.FilterBank:
    return filters.qmf_bank_from_lowpass(self.dec_lo[...])


class OrthogonalWavelet(_FilterBankTransform):
  """OrthoWavSpA: lattice angles [wlen/2, D] -> orthonormal per-channel bank (module doc)."""

  def __init__(self, *, dim: int, wlen: int = 16, levels: int = 1, mode: str = "periodization"):
    wlen = _check_wlen(wlen, "the orthogonal lattice wavelet")
    angles = filters.lattice_angles(_daubechies_lowpass(wlen))
    self.angles = nnx.Param(jnp.asarray(np.tile(angles[:, None], (1, dim)), jnp.float32))
    self.levels = levels
    self.mode = dwt.check_mode(mode)

  def bank(self) -> filters.FilterBank:
    return filters.qmf_bank_from_lowpass(filters.lattice_lowpass(self.angles[...]))


# --- lifting --------------------------------------------------------------------------------

Step = Callable[[jax.Array, int], jax.Array]  # (sequence [B, m, D], output length) -> [B, count, D]


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  return x[:, 0::2], x[:, 1::2]


def _merge(e: jax.Array, o: jax.Array) -> jax.Array:
  """Interleave e [B, ceil(n/2), D] and o [B, floor(n/2), D] into [B, n, D]."""
  n = e.shape[1] + o.shape[1]
  if o.shape[1] < e.shape[1]:
    o = jnp.pad(o, ((0, 0), (0, 1), (0, 0)))
  y = jnp.stack([e, o], axis=2).reshape(e.shape[0], 2 * e.shape[1], *e.shape[2:])
  return y[:, :n]


def lifting_forward(x: jax.Array, predict: Step, update: Step, levels: int) -> list[jax.Array]:
  """Lifting analysis of x [B, N, ...] along axis 1 -> [s_J, d_J, ..., d_1].

  Per level: e, o = even/odd samples; d = o - predict(e, len(o)); s = e + update(d, len(e)).
  """
  details, s = [], x
  for _ in range(levels):
    if s.shape[1] < 2:
      raise ValueError(f"lifting needs at least 2 samples per level; {levels} levels do not fit "
                       f"a sequence of length {x.shape[1]}")
    e, o = _split(s)
    d = o - predict(e, o.shape[1])
    s = e + update(d, e.shape[1])
    details.append(d)
  return [s] + details[::-1]


def lifting_inverse(bands: list[jax.Array], predict: Step, update: Step) -> jax.Array:
  """Exact inverse of ``lifting_forward`` with the same predict/update."""
  s = bands[0]
  for d in bands[1:]:
    e = s - update(d, s.shape[1])
    o = d + predict(e, d.shape[1])
    s = _merge(e, o)
  return s


_LEGALL = {"predict": 0.5, "update": 0.25}  # the 5/3 taps on offsets {0, 1} and {-1, 0}


def _offsets(wlen: int, step: str) -> list[int]:
  """Neighbours a predict (e[n - wlen/2 + 1 .. n + wlen/2]) or update (d[n - wlen/2 .. n +
  wlen/2 - 1]) step sees; wlen=2 gives the 5/3 neighbours {n, n+1} and {n-1, n}."""
  first = -(wlen // 2 - 1) if step == "predict" else -(wlen // 2)
  return list(range(first, first + wlen))


class LiftingWavelet(nnx.Module):
  """LiftWavSpA: LeGall 5/3 lifting, fixed or with learned predict/update (module doc)."""

  def __init__(self, *, dim: int, levels: int = 1, learned: bool = False, wlen: int | None = None,
               rngs: nnx.Rngs | None = None):
    self.levels = levels
    self.learned = learned
    wlen = 2 if wlen is None else _check_wlen(wlen, "the lifting scheme")
    if not learned and wlen != 2:
      raise ValueError("the fixed LeGall 5/3 lifting has a window of 2; use wavelet='adalift' for "
                       "a learned window")
    self.predict_offsets = tuple(_offsets(wlen, "predict"))
    self.update_offsets = tuple(_offsets(wlen, "update"))
    if learned:
      if rngs is None:
        raise ValueError("a learned lifting scheme needs rngs")
      centre = wlen // 2 - 1  # the taps of offsets {0, 1} (predict) and {-1, 0} (update)
      for step in ("predict", "update"):
        taps = np.zeros((wlen, dim), np.float32)
        taps[centre:centre + 2] = _LEGALL[step]
        setattr(self, f"{step}_linear", nnx.Param(jnp.asarray(taps)))
        setattr(self, f"{step}_gate_taps", nnx.Param(
            jax.random.normal(rngs.params(), (wlen, dim), jnp.float32) / np.sqrt(wlen)))
        setattr(self, f"{step}_gain", nnx.Param(jnp.zeros((dim,), jnp.float32)))

  def _step(self, which: str) -> Step:
    """predict (which="predict") or update as a function (sequence, count) -> [B, count, D]."""
    offsets = getattr(self, f"{which}_offsets")

    def step(seq: jax.Array, count: int) -> jax.Array:
      if not self.learned:
        return dwt.correlate(seq, np.full(2, _LEGALL[which]), offsets, count, "constant", axis=1)
      lin = getattr(self, f"{which}_linear")[...]
      gate = getattr(self, f"{which}_gate_taps")[...]
      gain = getattr(self, f"{which}_gain")[...]
      out = dwt.correlate(seq, lin, offsets, count, "constant", axis=1)
      return out + gain * jax.nn.silu(dwt.correlate(seq, gate, offsets, count, "constant", axis=1))

    return step

  def _cast(self, x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))

  def forward(self, x: jax.Array, mask: jax.Array | None = None) -> list[jax.Array]:
    """x: [B, N, D] -> [s_J, d_J, ..., d_1] (ceil/floor halves per level)."""
    bands = lifting_forward(self._cast(_zero_padding(x, mask)), self._step("predict"),
                            self._step("update"), self.levels)
    return [b.astype(x.dtype) for b in bands]

  def inverse(self, bands: list[jax.Array], length: int) -> jax.Array:
    x = lifting_inverse([self._cast(b) for b in bands], self._step("predict"), self._step("update"))
    return x[:, :length].astype(bands[0].dtype)

  def band_masks(self, mask: jax.Array) -> list[jax.Array]:
    """Supports through the predict/update windows: the same lifting cascade run on the mask
    with all-ones windows (d = o + window sum of e, s = e + window sum of d), then > 0."""
    def window_sum(which: str, sign: float) -> Step:
      offsets = getattr(self, f"{which}_offsets")
      return lambda seq, count: dwt.correlate(seq, np.full(len(offsets), sign), offsets, count,
                                              "constant", axis=1)

    valid = mask.astype(jnp.float32)[..., None]
    bands = lifting_forward(valid, window_sum("predict", -1.0), window_sum("update", 1.0), self.levels)
    return [b[..., 0] > 0 for b in bands]


def build_transform(wavelet: str, *, dim: int, wlen: int | None = None, levels: int = 1,
                    mode: str | None = None, rngs: nnx.Rngs | None = None) -> nnx.Module:
  """The transform called ``wavelet``: "ada", "ortho", "lift", "adalift" or a PyWavelets name.

  ``wlen``: filter length of "ada"/"ortho" (default 16) or window of "adalift" (default 4);
  ``mode``: boundary mode of the filter-bank transforms (default "periodization"; lifting has
  its own boundary rule and takes none).
  """
  if not isinstance(levels, (int, np.integer)) or levels < 1:
    raise ValueError(f"levels must be an integer >= 1; got {levels!r}")
  if wavelet in ("lift", "adalift"):
    if mode is not None:
      raise ValueError(f"wavelet {wavelet!r} (lifting) has its own boundary rule; leave mode unset")
    learned = wavelet == "adalift"
    if not learned and wlen is not None:
      raise ValueError("wavelet 'lift' (LeGall 5/3) has no wlen; use 'adalift' for a learned window")
    return LiftingWavelet(dim=dim, levels=levels, learned=learned,
                          wlen=_DEFAULT_WLEN["adalift"] if learned and wlen is None else wlen,
                          rngs=rngs)
  mode = "periodization" if mode is None else mode
  if wavelet in ("ada", "ortho"):
    cls = AdaptiveWavelet if wavelet == "ada" else OrthogonalWavelet
    return cls(dim=dim, wlen=_DEFAULT_WLEN[wavelet] if wlen is None else wlen, levels=levels, mode=mode)
  if wlen is not None:
    raise ValueError(f"wlen applies to the learnable wavelets ({', '.join(LEARNABLE)}); the fixed "
                     f"wavelet {wavelet!r} has its own length")
  return FixedWavelet(wavelet, levels=levels, mode=mode)
