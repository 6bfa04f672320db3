"""lra_wavelet.wavelets.dwt / filters against PyWavelets (the independent reference).

Every case is compiled once (jit of the whole decomposition + reconstruction), so the cases
are chosen to cover every boundary mode, odd and even lengths, every level up to the maximum,
filters longer than the signal (repeated extension) and every wavelet family, with few shapes.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt

from lra_wavelet.wavelets import dwt, filters
from lra_wavelet.wavelets.filters import FilterBank

RNG = np.random.default_rng(0)

# (wavelet, mode, length, level); level None = dwt_max_level. Lengths below the filter length
# (with explicit levels above the maximum, which PyWavelets allows with a warning) exercise
# extensions that wrap or mirror more than once.
CASES = [
    ("haar", "periodization", 33, None),
    ("db2", "zero", 20, None),
    ("db3", "symmetric", 37, None),
    ("sym4", "reflect", 29, None),
    ("coif1", "smooth", 24, None),
    ("bior3.5", "antisymmetric", 31, None),
    ("rbio2.4", "antireflect", 26, None),
    ("db4", "periodic", 19, None),
    ("bior1.3", "constant", 22, None),
    ("dmey", "periodization", 125, None),
    ("db5", "symmetric", 5, 2),
    ("sym3", "reflect", 3, 2),
    ("db4", "antireflect", 4, 1),
    ("db3", "periodization", 3, 2),
    ("coif2", "smooth", 6, 1),
    ("db2", "antisymmetric", 7, 3),
]


def _close(got, ref, rtol=1e-5):
  ref = np.asarray(ref)
  np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=rtol,
                             atol=rtol * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("wavelet,mode,n,level", CASES, ids=[f"{w}-{m}-{n}" for w, m, n, _ in CASES])
def test_wavedec_waverec_match_pywavelets(wavelet, mode, n, level):
  x = RNG.standard_normal((3, n)).astype(np.float32)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # levels above dwt_max_level warn in both libraries
    ref = pywt.wavedec(x.astype(np.float64), wavelet, mode=mode, level=level)
    ref_rec = pywt.waverec(ref, wavelet, mode=mode)

    @jax.jit
    def run(x):
      coeffs = dwt.wavedec(x, wavelet, level=level, mode=mode)
      return coeffs, dwt.waverec(coeffs, wavelet, mode=mode)

    coeffs, rec = run(x)
    lengths = dwt.wavedec_lengths(n, wavelet, level, mode)
  assert [c.shape for c in coeffs] == [r.shape for r in ref]
  assert lengths == [r.shape[-1] for r in ref]
  for c, r in zip(coeffs, ref):
    _close(c, r)
  assert rec.shape == ref_rec.shape
  _close(rec, ref_rec)
  if np.allclose(ref_rec[..., :n], x, atol=1e-5):  # perfect-reconstruction banks (not dmey)
    _close(rec[..., :n], x, rtol=1e-4)


def test_package_exports_the_pywavelets_style_api():
  """``from lra_wavelet.wavelets import wavedec, waverec`` (the issue's API), also with a
  ``pywt.Wavelet`` object and an axis in the middle of a 3-D input."""
  from lra_wavelet.wavelets import wavedec, waverec  # pylint: disable=import-outside-toplevel
  x = RNG.standard_normal((2, 27, 3)).astype(np.float32)
  wavelet = pywt.Wavelet("sym3")
  ref = pywt.wavedec(x.astype(np.float64), wavelet, mode="symmetric", axis=1)
  coeffs = wavedec(x, wavelet, mode="symmetric", axis=1)
  assert len(coeffs) == len(ref)
  for c, r in zip(coeffs, ref):
    _close(c, r)
  _close(waverec(coeffs, wavelet, mode="symmetric", axis=1),
         pywt.waverec(ref, wavelet, mode="symmetric", axis=1))


def test_single_level_transform_on_a_middle_axis_with_missing_bands():
  x = RNG.standard_normal((2, 15, 3)).astype(np.float32)
  for mode in ("symmetric", "periodization"):
    cA, cD = jax.jit(lambda x: dwt.dwt(x, "sym3", mode=mode, axis=1))(x)
    rA, rD = pywt.dwt(x.astype(np.float64), "sym3", mode=mode, axis=1)
    _close(cA, rA)
    _close(cD, rD)
    _close(dwt.idwt(cA, None, "sym3", mode=mode, axis=1), pywt.idwt(rA, None, "sym3", mode=mode, axis=1))
    _close(dwt.idwt(None, cD, "sym3", mode=mode, axis=1), pywt.idwt(None, rD, "sym3", mode=mode, axis=1))


def test_waverec_with_a_missing_detail_band():
  x = RNG.standard_normal(21)
  ref = pywt.wavedec(x, "db2", mode="symmetric", level=2)
  ref[1] = None
  got = [jnp.asarray(c, jnp.float32) if c is not None else None for c in ref]
  _close(dwt.waverec(got, "db2", mode="symmetric"), pywt.waverec(ref, "db2", mode="symmetric"))


def test_per_channel_filters_filter_each_channel_with_its_own_bank():
  length, channels, n = 6, 3, 21
  bank = FilterBank(*(RNG.standard_normal((length, channels)).astype(np.float32) for _ in range(4)))
  x = RNG.standard_normal((2, n, channels)).astype(np.float32)
  for mode in ("periodization", "symmetric", "smooth"):
    coeffs = jax.jit(lambda x, b: dwt.wavedec(x, FilterBank(*b), level=2, mode=mode, axis=1))(x, tuple(bank))
    rec = dwt.waverec(coeffs, FilterBank(*(jnp.asarray(f) for f in bank)), mode=mode, axis=1)
    for c in range(channels):
      w = pywt.Wavelet(f"random{c}", filter_bank=[f[:, c].astype(np.float64) for f in bank])
      ref = pywt.wavedec(x[..., c].astype(np.float64), w, mode=mode, level=2, axis=1)
      for got, r in zip(coeffs, ref):
        _close(got[..., c], r, rtol=1e-4)
      _close(rec[..., c], pywt.waverec(ref, w, mode=mode, axis=1), rtol=1e-4)


def _unit_bank(which: int, j: int, length: int) -> pywt.Wavelet:
  fb = [np.zeros(length) for _ in range(4)]
  fb[which][j] = 1.0
  return pywt.Wavelet("unit", filter_bank=fb)


@pytest.mark.parametrize("mode", ["symmetric", "periodization"])
def test_gradients_match_pywavelets_adjoint_and_filter_derivatives(mode):
  """d/dx and d/dfilters of a scalar loss, against PyWavelets run on unit vectors/unit filters
  (the transform is linear in x and in each filter)."""
  length, n = 4, 9
  bank = filters.filter_bank("db2")
  x = RNG.standard_normal(n)
  ga, gd = (RNG.standard_normal(dwt.dwt_coeff_len(n, length, mode)) for _ in range(2))
  ua, ud = (RNG.standard_normal(5) for _ in range(2))
  gr = RNG.standard_normal(dwt.idwt_len(5, length, mode))

  def loss(x, fb):
    cA, cD = dwt.dwt(x, FilterBank(*fb), mode=mode)
    rec = dwt.idwt(jnp.asarray(ua, jnp.float32), jnp.asarray(ud, jnp.float32), FilterBank(*fb), mode=mode)
    return jnp.sum(ga * cA) + jnp.sum(gd * cD) + jnp.sum(gr * rec)

  gx, gfb = jax.jit(jax.grad(loss, argnums=(0, 1)))(
      jnp.asarray(x, jnp.float32), tuple(jnp.asarray(f, jnp.float32) for f in bank))
  # d/dx: J^T g with J from PyWavelets on unit vectors.
  ref_gx = np.array([np.dot(ga, pywt.dwt(e, "db2", mode=mode)[0]) + np.dot(gd, pywt.dwt(e, "db2", mode=mode)[1])
                     for e in np.eye(n)])
  _close(gx, ref_gx, rtol=1e-4)
  # d/d filter tap j: the transform with the unit filter e_j in that slot.
  for which in range(4):
    ref = []
    for j in range(length):
      w = _unit_bank(which, j, length)
      if which < 2:
        cA, cD = pywt.dwt(x, w, mode=mode)
        ref.append(np.dot(ga, cA) if which == 0 else np.dot(gd, cD))
      else:
        ref.append(np.dot(gr, pywt.idwt(ua if which == 2 else None, ud if which == 3 else None, w, mode=mode)))
    _close(gfb[which], ref, rtol=1e-4)


@pytest.mark.parametrize("mode", ["smooth", "antireflect"])
def test_extrapolating_modes_stay_float32_exact_at_deep_levels(mode):
  """smooth/antireflect extend by extrapolation, so the boundary samples a long filter sees
  grow with depth (smooth: here to 1000x the signal). Summing taps times those samples in float32
  was off by 6e-5 of the largest coefficient (PyWavelets' own float32: 2e-5); the exact
  boundary maps keep it within 1e-5. The gradient is the transform's adjoint."""
  n, wavelet, rng = 1000, "db38", np.random.default_rng(1)
  x = rng.standard_normal((2, n)).astype(np.float32)
  ref = pywt.wavedec(x.astype(np.float64), wavelet, mode=mode)
  got = jax.jit(lambda x: dwt.wavedec(x, wavelet, mode=mode))(x)
  scale = max(float(np.abs(r).max()) for r in ref)
  assert len(got) == len(ref) == 4 and scale > (100 if mode == "smooth" else 1)
  assert max(float(np.abs(np.asarray(g, np.float64) - r).max()) for g, r in zip(got, ref)) < 1e-5 * scale
  # d/dx of <g, wavedec(x)> on a short signal (boundary rows only) = J^T g, J from PyWavelets.
  m = 9
  cot = [rng.standard_normal(k) for k in dwt.wavedec_lengths(m, "sym4", 2, mode)]
  gx = jax.grad(lambda v: sum(jnp.sum(c * b) for c, b in zip(cot, dwt.wavedec(v, "sym4", 2, mode))))(
      jnp.asarray(rng.standard_normal(m), jnp.float32))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # level 2 is above dwt_max_level(9, 8)
    ref_gx = [sum(np.dot(c, b) for c, b in zip(cot, pywt.wavedec(e, "sym4", mode=mode, level=2)))
              for e in np.eye(m)]
  _close(gx, ref_gx, rtol=1e-4)


SUPPORT_CASES = [("symmetric", 11, 2), ("periodization", 11, 2), ("smooth", 10, 1),
                 ("antireflect", 9, 1), ("zero", 12, 2), ("reflect", 7, 1)]


@pytest.mark.parametrize("mode,n,level", SUPPORT_CASES, ids=[c[0] for c in SUPPORT_CASES])
def test_support_masks_match_brute_force_dependence(mode, n, level):
  """A coefficient is marked valid iff it depends on a valid sample (PyWavelets Jacobian of a
  random filter bank, so that no dependence cancels by accident)."""
  bank = [RNG.uniform(0.5, 1.5, 4) * RNG.choice([-1, 1], 4) for _ in range(4)]
  w = pywt.Wavelet("random", filter_bank=bank)
  valid = np.zeros((2, n), bool)
  valid[0, :5] = True
  valid[1, [2, n - 1]] = True
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    jac = np.stack([np.concatenate(pywt.wavedec(e, w, mode=mode, level=level)) for e in np.eye(n)], 1)
    got = dwt.wavedec_support(valid, FilterBank(*(jnp.asarray(f, jnp.float32) for f in bank)),
                              level=level, mode=mode)
  ref = (np.abs(jac) > 1e-12).astype(int) @ valid.T.astype(int) > 0  # [coeffs, batch]
  np.testing.assert_array_equal(np.concatenate(got, axis=1), ref.T)


def test_support_ignores_the_zero_padding_taps_of_biorthogonal_filters():
  n = 12
  valid = np.arange(n)[None] < 5
  got = dwt.wavedec_support(valid, "bior2.2", level=1, mode="symmetric")
  jac = np.stack([np.concatenate(pywt.wavedec(e, "bior2.2", mode="symmetric", level=1)) for e in np.eye(n)], 1)
  ref = (np.abs(jac) > 1e-12).astype(int) @ valid[0].astype(int) > 0
  np.testing.assert_array_equal(np.concatenate(got, axis=1)[0], ref)


def test_max_level_and_coefficient_lengths_match_pywavelets():
  for n in [1, 2, 3, 7, 8, 63, 64, 100, 4096]:
    for length in [2, 4, 6, 10, 62]:
      assert dwt.dwt_max_level(n, length) == pywt.dwt_max_level(n, length), (n, length)
      for mode in dwt.MODES:
        assert dwt.dwt_coeff_len(n, length, mode) == pywt.dwt_coeff_len(n, length, mode), (n, length, mode)
  assert dwt.dwt_max_level(1000, "db4") == pywt.dwt_max_level(1000, pywt.Wavelet("db4"))


@pytest.mark.parametrize("name", ["haar", "db2", "db7", "sym5", "coif3"])
def test_quadrature_mirror_relations_give_the_pywavelets_bank(name):
  w = pywt.Wavelet(name)
  bank = filters.qmf_bank_from_lowpass(np.asarray(w.dec_lo))
  for got, ref in zip(bank, w.filter_bank):
    np.testing.assert_allclose(got, ref, atol=1e-12)
  # The same relations on JAX per-channel filters.
  jbank = filters.qmf_bank_from_lowpass(jnp.tile(jnp.asarray(w.dec_lo, jnp.float32)[:, None], (1, 2)))
  for got, ref in zip(jbank, w.filter_bank):
    np.testing.assert_allclose(np.asarray(got)[:, 1], ref, atol=1e-6)


def test_lattice_factorisation_round_trip_and_orthonormality():
  for name in ["db1", "db2", "db4", "db8", "sym6"]:
    h = np.asarray(pywt.Wavelet(name).dec_lo)
    np.testing.assert_allclose(filters.lattice_lowpass(filters.lattice_angles(h)), h, atol=1e-10)
  angles = RNG.uniform(-np.pi, np.pi, (5, 3))
  h = filters.lattice_lowpass(angles)  # [10, 3]
  for shift in range(5):
    gram = np.sum(h[2 * shift:] * h[:10 - 2 * shift], axis=0)
    np.testing.assert_allclose(gram, np.full(3, float(shift == 0)), atol=1e-12)
  with pytest.raises(ValueError, match="orthonormal"):
    filters.lattice_angles(np.array([1.0, 1.0, 0.0, 0.0]))


def test_correlate_matches_a_direct_sum():
  x = RNG.standard_normal((2, 9, 3)).astype(np.float32)
  taps = RNG.standard_normal((3, 3)).astype(np.float32)
  offsets = [-2, 0, 3]
  got = dwt.correlate(x, taps, offsets, 7, mode="constant", axis=1)
  ref = np.zeros((2, 7, 3))
  for i in range(7):
    for k, off in enumerate(offsets):
      ref[:, i] += taps[k] * x[:, min(max(i + off, 0), 8)]
  _close(got, ref)


def test_low_precision_inputs_keep_their_dtype():
  x = RNG.standard_normal((2, 32)).astype(np.float32)
  coeffs = dwt.wavedec(jnp.asarray(x, jnp.bfloat16), "db2", level=2)
  assert all(c.dtype == jnp.bfloat16 for c in coeffs)
  for c, r in zip(coeffs, pywt.wavedec(x, "db2", mode="periodization", level=2)):
    np.testing.assert_allclose(np.asarray(c, np.float32), r, atol=0.05 * np.abs(r).max())
  assert dwt.waverec(coeffs, "db2").dtype == jnp.bfloat16


def test_user_errors_are_value_errors():
  x = jnp.zeros((2, 16, 3))
  with pytest.raises(ValueError, match="mode"):
    dwt.wavedec(x, "db2", mode="mirror", axis=1)
  with pytest.raises(ValueError, match="unknown wavelet"):
    dwt.wavedec(x, "db99", axis=1)
  with pytest.raises(ValueError, match="even"):
    dwt.dwt(x, FilterBank(*(np.ones(3) for _ in range(4))), axis=1)
  with pytest.raises(ValueError, match="LAST axis"):
    dwt.dwt(x, FilterBank(*(np.ones((4, 3)) for _ in range(4))), axis=2)
  with pytest.raises(ValueError, match="same shape"):
    dwt.idwt(jnp.zeros(5), jnp.zeros(6), "db2")
  with pytest.raises(ValueError, match="mismatch"):
    dwt.waverec([jnp.zeros(5), jnp.zeros(9)], "db2")
