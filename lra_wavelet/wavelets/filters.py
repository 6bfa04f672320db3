"""Two-channel filter banks: by name (from PyWavelets), by the quadrature-mirror relations,
and by the orthogonal lattice.

A ``FilterBank`` holds the four filters of a two-channel wavelet filter bank in PyWavelets'
conventions (``pywt.Wavelet(name).filter_bank``): analysis ``dec_lo``/``dec_hi`` and
synthesis ``rec_lo``/``rec_hi``. Each filter has shape ``[L]`` (one filter for every channel)
or ``[L, C]`` (one filter per channel; the channel axis is the last axis of the signal the
bank is applied to, see ``lra_wavelet.wavelets.dwt``). L must be even, as in PyWavelets,
whose odd-length (biorthogonal) filters are stored padded with a zero.

Quadrature-mirror relations (orthogonal wavelets, Daubechies 1992 "Ten Lectures on
Wavelets", ch. 5; written here in PyWavelets' sign convention): from the low-pass analysis
filter ``h = dec_lo`` of length L,

    dec_hi[k] = -(-1)^k h[L-1-k],   rec_lo[k] = h[L-1-k],   rec_hi[k] = (-1)^k h[k].

For every ``dbN``/``symN``/``coifN`` of PyWavelets these reproduce its own bank exactly.

Orthogonal lattice (Vaidyanathan 1993, "Multirate Systems and Filter Banks", ch. 6): every
orthonormal two-channel bank of length L = 2K is a product of K plane rotations separated by
unit delays of one polyphase channel. In the filter domain, starting from
``h = [cos t0, sin t0]`` and ``g = [-sin t0, cos t0]``, each further angle t does

    h <- cos t * [h, 0, 0] + sin t * [0, 0, g],   g <- -sin t * [h, 0, 0] + cos t * [0, 0, g],

which keeps ``h`` orthonormal to its own even shifts for every angle; ``lattice_angles``
inverts this (the "step-down" factorisation) so a lattice can start at any orthonormal
filter such as db(L/2). The OrthoWavSpA transform (REFERENCES.md §1) builds its filters
this way, one angle vector per channel.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pywt


class FilterBank(NamedTuple):
  """The four filters of a two-channel bank, each ``[L]`` or ``[L, C]`` (see module doc)."""
  dec_lo: Any
  dec_hi: Any
  rec_lo: Any
  rec_hi: Any

  @property
  def length(self) -> int:
    return int(self.dec_lo.shape[0])


def _xp(*arrays):
  """numpy for concrete numpy inputs, jax.numpy as soon as one input is a JAX array."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


@functools.lru_cache(maxsize=None)
def _named_bank(name: str) -> FilterBank:
  try:
    w = pywt.Wavelet(name)
  except ValueError:
    raise ValueError(f"unknown wavelet {name!r}; use a discrete wavelet from "
                     f"pywt.wavelist(kind='discrete') (e.g. 'haar', 'db2', 'sym4', 'bior2.2')") from None
  bank = []
  for f in w.filter_bank:
    a = np.array(f, dtype=np.float64)
    a.flags.writeable = False
    bank.append(a)
  return FilterBank(*bank)


def filter_bank(wavelet) -> FilterBank:
  """The filter bank of ``wavelet``: a PyWavelets discrete wavelet name, a ``pywt.Wavelet``,
  a ``FilterBank`` or a sequence of four filters (dec_lo, dec_hi, rec_lo, rec_hi).

  Named wavelets give read-only float64 numpy filters of shape [L]. Raises ValueError for an
  unknown name, filters of different or odd lengths, or shapes other than [L] / [L, C].
  """
  if isinstance(wavelet, str):
    return _named_bank(wavelet)
  if isinstance(wavelet, pywt.Wavelet):
    wavelet = tuple(np.asarray(f, np.float64) for f in wavelet.filter_bank)
  if not isinstance(wavelet, (tuple, list)) or len(wavelet) != 4:
    raise ValueError(f"wavelet must be a PyWavelets name, a pywt.Wavelet or a FilterBank of four "
                     f"filters (dec_lo, dec_hi, rec_lo, rec_hi); got {type(wavelet).__name__}")
  bank = FilterBank(*(f if isinstance(f, (np.ndarray, jax.Array)) else np.asarray(f, np.float64)
                      for f in wavelet))
  lengths = {f.shape[0] if f.ndim else 0 for f in bank}
  if len(lengths) != 1:
    raise ValueError(f"the four filters of a bank must have the same length; got shapes "
                     f"{[tuple(f.shape) for f in bank]}")
  length = lengths.pop()
  if length < 2 or length % 2:
    raise ValueError(f"filter length must be even and >= 2 (PyWavelets convention); got {length}: "
                     f"pad odd-length filters with one zero")
  if any(f.ndim not in (1, 2) for f in bank):
    raise ValueError(f"each filter must have shape [L] or [L, C]; got shapes "
                     f"{[tuple(f.shape) for f in bank]}")
  channels = {f.shape[1] for f in bank if f.ndim == 2}
  if len(channels) > 1:
    raise ValueError(f"per-channel filters must all have the same channel count; got shapes "
                     f"{[tuple(f.shape) for f in bank]}")
  return bank


def channels(bank: FilterBank) -> int | None:
  """C for a bank with per-channel filters [L, C], None when every filter is [L]."""
  for f in bank:
    if f.ndim == 2:
      return int(f.shape[1])
  return None


def qmf_bank_from_lowpass(dec_lo) -> FilterBank:
  """The orthogonal bank of low-pass analysis filter ``dec_lo`` ([L] or [L, C], along axis 0)
  by the quadrature-mirror relations of the module doc. numpy in, numpy out; JAX in, JAX out.
  """
  xp = _xp(dec_lo)
  h = dec_lo if xp is jnp else np.asarray(dec_lo, np.float64)
  length = h.shape[0]
  sign = (-1.0) ** np.arange(length)
  sign = sign.reshape((length,) + (1,) * (h.ndim - 1))
  rec_lo = xp.flip(h, axis=0)
  dec_hi = -sign * rec_lo
  rec_hi = sign * h
  return FilterBank(h, dec_hi, rec_lo, rec_hi)


def lattice_lowpass(angles):
  """Orthonormal low-pass filter of the lattice with angles ``[K]`` or ``[K, C]``.

  Returns ``h`` of shape [2K] or [2K, C] (see module doc). numpy in, numpy out; JAX in, JAX out
  (differentiable in the angles).
  """
  xp = _xp(angles)
  angles = angles if xp is jnp else np.asarray(angles, np.float64)
  if angles.ndim not in (1, 2) or angles.shape[0] < 1:
    raise ValueError(f"lattice angles must have shape [K] or [K, C] with K >= 1; got {angles.shape}")
  c, s = xp.cos(angles), xp.sin(angles)
  h = xp.stack([c[0], s[0]])
  g = xp.stack([-s[0], c[0]])
  pad = [(0, 0)] * (angles.ndim - 1)
  for k in range(1, angles.shape[0]):
    h_shift = xp.pad(h, [(0, 2)] + pad)
    g_shift = xp.pad(g, [(2, 0)] + pad)
    h, g = c[k] * h_shift + s[k] * g_shift, -s[k] * h_shift + c[k] * g_shift
  return h


def lattice_angles(dec_lo) -> np.ndarray:
  """Angles [K] of the lattice whose low-pass filter is the orthonormal ``dec_lo`` [2K].

  The step-down factorisation of the module doc: the partner is the alternating flip
  ``g[k] = -(-1)^k h[2K-1-k]``; each step picks the rotation that zeroes the last two taps
  of the rotated ``h`` (and so the first two of the rotated ``g``) and removes the delay.
  Raises ValueError when ``dec_lo`` is not orthonormal to its even shifts.
  """
  h = np.asarray(dec_lo, np.float64)
  if h.ndim != 1 or h.shape[0] < 2 or h.shape[0] % 2:
    raise ValueError(f"lattice_angles needs one filter of even length; got shape {h.shape}")
  num = h.shape[0] // 2
  gram = [float(np.dot(h[2 * m:], h[:h.shape[0] - 2 * m])) for m in range(num)]
  if abs(gram[0] - 1.0) > 1e-8 or max((abs(v) for v in gram[1:]), default=0.0) > 1e-8:
    raise ValueError("lattice_angles needs a filter orthonormal to its even shifts (e.g. a dbN "
                     "dec_lo); this one is not")
  g = qmf_bank_from_lowpass(h).dec_hi
  angles = np.zeros(num)
  for k in range(num - 1, 0, -1):
    # (cos t, sin t) must zero c*h[-2:] - s*g[-2:] and s*h[:2] + c*g[:2]; take the least-squares
    # solution (smallest eigenvector) for numerical robustness with tiny end taps.
    rows = np.concatenate([np.stack([h[-2:], -g[-2:]], 1), np.stack([g[:2], h[:2]], 1)])
    _, vecs = np.linalg.eigh(rows.T @ rows)
    t = np.arctan2(vecs[1, 0], vecs[0, 0])
    c, s = np.cos(t), np.sin(t)
    h, g = (c * h - s * g)[:-2], (s * h + c * g)[2:]
    angles[k] = t
  angles[0] = np.arctan2(h[1], h[0])
  return angles
