"""Learnable wavelet transforms (lra_wavelet.wavelets.learnable): initialisation against
PyWavelets, perfect reconstruction for arbitrary parameters, a NumPy transcription of the
LeGall 5/3 lifting, band masks against the brute-force Jacobian support, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
from flax import nnx

from lra_wavelet.wavelets import learnable

# Small test lengths sit below dwt_max_level for some filter lengths; that is intended here.
pytestmark = pytest.mark.filterwarnings("ignore:level .* is above dwt_max_level",
                                        "ignore:Level value of .* is too high")

RNG = np.random.default_rng(1)
DIM = 3


def _x(n: int, batch: int = 2) -> jax.Array:
  return jnp.asarray(RNG.standard_normal((batch, n, DIM)), jnp.float32)


def _randomise(module: nnx.Module, scale: float = 0.7) -> nnx.Module:
  """Add large random values to every parameter (stands for an arbitrary training state)."""
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  params = jax.tree.map(lambda p: p + scale * jax.random.normal(jax.random.key(RNG.integers(1 << 30)),
                                                                p.shape), params)
  return nnx.merge(graphdef, params, rest)


def _forward(t, x, mask=None):
  """t.forward under jit (tests run compiled: op-by-op dispatch is much slower)."""
  return jax.jit(lambda x, mask: t.forward(x, mask))(x, mask)


def _round_trip(t, x):
  return jax.jit(lambda x: t.inverse(t.forward(x), x.shape[1]))(x)


@pytest.mark.parametrize("wavelet", ["ada", "ortho"])
def test_filter_wavelets_start_at_daubechies(wavelet):
  t = learnable.build_transform(wavelet, dim=DIM, wlen=8, levels=2, rngs=nnx.Rngs(0))
  x = _x(21)
  bands = _forward(t, x)
  ref = pywt.wavedec(np.asarray(x, np.float64), "db4", mode="periodization", level=2, axis=1)
  assert [b.shape for b in bands] == [r.shape for r in ref]
  for b, r in zip(bands, ref):
    np.testing.assert_allclose(b, r, atol=1e-5)
  np.testing.assert_allclose(t.bank().dec_lo[:, 2], pywt.Wavelet("db4").dec_lo, atol=1e-6)


@pytest.mark.parametrize("mode,n", [("periodization", 16), ("periodization", 13), ("symmetric", 13)])
def test_orthogonal_lattice_reconstructs_for_any_angles(mode, n):
  t = _randomise(learnable.build_transform("ortho", dim=DIM, wlen=6, levels=2, mode=mode))
  x = _x(n)
  np.testing.assert_allclose(_round_trip(t, x), x, atol=2e-5)
  if mode == "periodization" and n % 4 == 0:  # orthogonal: the energy is preserved (Parseval)
    energy = sum(jnp.sum(b ** 2, axis=1) for b in _forward(t, x))
    np.testing.assert_allclose(energy, jnp.sum(x ** 2, axis=1), rtol=1e-5)
  # The adaptive bank with arbitrary filters is not a perfect-reconstruction bank (only its
  # initialisation is), which shows the round-trip check above is not vacuous.
  ada = _randomise(learnable.build_transform("ada", dim=DIM, wlen=6, levels=2, mode=mode))
  assert float(jnp.abs(_round_trip(ada, x) - x).max()) > 1e-2


def _legall_numpy(x: np.ndarray, levels: int) -> list[np.ndarray]:
  """Direct transcription of the 5/3 lifting with the JPEG 2000 symmetric extension."""
  details, s = [], x
  for _ in range(levels):
    n = s.shape[1]
    e, o = s[:, 0::2], s[:, 1::2]
    ext = lambda i: s[:, i if i < n else 2 * (n - 1) - i]  # whole-sample mirror x[n] = x[n-2]
    d = np.stack([o[:, k] - (e[:, k] + ext(2 * k + 2)) / 2 for k in range(o.shape[1])], 1)
    d_ext = lambda k: d[:, min(max(k, 0), d.shape[1] - 1)]  # d[-1] = d[0]; odd n: d[last+1] = d[last]
    s = np.stack([e[:, k] + (d_ext(k - 1) + d_ext(k)) / 4 for k in range(e.shape[1])], 1)
    details.append(d)
  return [s] + details[::-1]


@pytest.mark.parametrize("n,levels", [(16, 2), (13, 3)])
def test_legall_lifting_matches_numpy_transcription_and_inverts(n, levels):
  t = learnable.build_transform("lift", dim=DIM, levels=levels)
  x = _x(n)
  bands = _forward(t, x)
  ref = _legall_numpy(np.asarray(x, np.float64), levels)
  assert [b.shape for b in bands] == [r.shape for r in ref]
  for b, r in zip(bands, ref):
    np.testing.assert_allclose(b, r, atol=1e-5)
  np.testing.assert_allclose(_round_trip(t, x), x, atol=1e-5)


def test_learned_lifting_starts_at_legall_and_inverts_for_any_parameters():
  x = _x(13)
  lift = learnable.build_transform("lift", dim=DIM, levels=3)
  adalift = learnable.build_transform("adalift", dim=DIM, wlen=4, levels=3, rngs=nnx.Rngs(0))
  lift_bands = _forward(lift, x)
  for a, b in zip(_forward(adalift, x), lift_bands):
    np.testing.assert_allclose(a, b, atol=1e-6)
  trained = _randomise(adalift)
  assert float(jnp.abs(_forward(trained, x)[0] - lift_bands[0]).max()) > 1e-2
  np.testing.assert_allclose(_round_trip(trained, x), x, atol=2e-5)


TRANSFORMS = [("db2", {}), ("bior2.2", {"mode": "symmetric"}), ("ada", {"wlen": 4}),
              ("ortho", {"wlen": 4, "mode": "zero"}), ("lift", {}), ("adalift", {"wlen": 4})]


@pytest.mark.parametrize("wavelet,options", TRANSFORMS, ids=[w for w, _ in TRANSFORMS])
def test_band_masks_match_jacobian_support(wavelet, options):
  """band_masks(mask) is True exactly where a coefficient depends on a real token (random
  parameters, so that no dependence cancels by accident)."""
  n = 12
  t = learnable.build_transform(wavelet, dim=DIM, levels=2, rngs=nnx.Rngs(0), **options)
  if wavelet in ("ada", "ortho", "adalift"):
    t = _randomise(t)
  mask = np.zeros((2, n), bool)
  mask[0, :7] = True
  mask[1, [0, 5, 6]] = True
  got = jax.jit(t.band_masks)(jnp.asarray(mask))
  x = _x(n, batch=1)
  jac = jax.jit(jax.jacrev(lambda x: jnp.concatenate(t.forward(x), axis=1)))(x)[0]  # [coeffs, D, 1, n, D]
  depends = jnp.any(jnp.abs(jac) > 1e-7, axis=(1, 2, 4))  # [coeffs, n]
  ref = np.asarray(depends).astype(int) @ mask.T.astype(int) > 0
  np.testing.assert_array_equal(np.concatenate([np.asarray(g) for g in got], axis=1), ref.T)


@pytest.mark.parametrize("wavelet", ["ada", "ortho", "adalift"])
def test_parameter_gradients_are_finite_and_nonzero(wavelet):
  t = _randomise(learnable.build_transform(wavelet, dim=DIM, wlen=4, levels=2, rngs=nnx.Rngs(0)), 0.1)
  x, mask = _x(11), jnp.arange(11)[None] < jnp.array([[11], [6]])
  graphdef, params, rest = nnx.split(t, nnx.Param, ...)

  def loss(params):
    m = nnx.merge(graphdef, params, rest)
    bands = m.forward(x, mask)
    return jnp.sum(m.inverse([jnp.tanh(b) for b in bands], 11) ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  for g in jax.tree.leaves(grads):
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.abs(g).max()) > 0


def test_forward_mask_zeroes_padding_and_bf16_runs():
  t = learnable.build_transform("ortho", dim=DIM, wlen=4, levels=1)
  x = _x(10)
  mask = jnp.arange(10)[None] < jnp.array([[10], [4]])
  for a, b in zip(_forward(t, x, mask), _forward(t, jnp.where(mask[..., None], x, 0.0))):
    np.testing.assert_array_equal(a, b)
  lift = learnable.build_transform("lift", dim=DIM, levels=2)
  bands = _forward(lift, x.astype(jnp.bfloat16))
  assert all(b.dtype == jnp.bfloat16 for b in bands)
  rec = _round_trip(lift, x.astype(jnp.bfloat16))
  assert rec.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(rec, np.float32), x, atol=0.1)


def test_option_errors():
  with pytest.raises(ValueError, match="even wlen"):
    learnable.build_transform("ada", dim=DIM, wlen=5)
  with pytest.raises(ValueError, match="no wlen"):
    learnable.build_transform("lift", dim=DIM, wlen=4)
  with pytest.raises(ValueError, match="boundary rule"):
    learnable.build_transform("adalift", dim=DIM, mode="symmetric", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="wlen applies"):
    learnable.build_transform("db2", dim=DIM, wlen=4)
  with pytest.raises(ValueError, match="levels"):
    learnable.build_transform("db2", dim=DIM, levels=0)
  with pytest.raises(ValueError, match="unknown wavelet"):
    learnable.build_transform("morlet", dim=DIM)
  with pytest.raises(ValueError, match="at least 2 samples"):
    learnable.build_transform("lift", dim=DIM, levels=3).forward(_x(4))
