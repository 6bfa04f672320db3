"""The ``wavspa`` mixer: shapes, gradients, padding invariance, share_inner, option errors,
and the whole pipeline against a manual composition with PyWavelets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
from flax import nnx

from lra_wavelet import attention

pytestmark = pytest.mark.filterwarnings("ignore:level .* is above dwt_max_level")

DIM, HEADS = 16, 2
RNG = np.random.default_rng(2)

# Inner mixers to wrap (those present in the registry), with options for tiny inputs.
INNER = {"softmax": {}, "linear": {}, "performer": {"num_features": 16},
         "linformer": {"max_len": 24, "k": 4}, "local": {"window": 4}}
AVAILABLE_INNER = [name for name in INNER if name in attention.names()]

WAVELETS = [("db2", {}), ("ada", {"wlen": 4}), ("ortho", {"wlen": 4}), ("lift", {}),
            ("adalift", {"wlen": 4})]


def _build(**options) -> nnx.Module:
  return attention.build("wavspa", dim=DIM, num_heads=HEADS, rngs=nnx.Rngs(0), **options)


def _mask(n: int, lengths) -> jax.Array:
  return jnp.arange(n)[None] < jnp.asarray(lengths)[:, None]


def _apply(module, x, mask):
  graphdef, state = nnx.split(module)
  return jax.jit(lambda state, x, mask: nnx.merge(graphdef, state)(x, mask, deterministic=True))(
      state, x, mask)


@pytest.mark.parametrize("wavelet,options", WAVELETS, ids=[w for w, _ in WAVELETS])
def test_shape_gradients_and_padding_values(wavelet, options):
  n, levels = 12, 2 if wavelet == "db2" else 1
  m = _build(wavelet=wavelet, levels=levels, **options)
  assert len(m.mixers) == levels + 1  # one inner mixer per band
  x = jnp.asarray(RNG.standard_normal((2, n, DIM)), jnp.float32)
  mask = _mask(n, [n, 7])
  graphdef, params, rest = nnx.split(m, nnx.Param, ...)

  @jax.jit
  def run(params, x):
    def loss(params, x):
      y = nnx.merge(graphdef, params, rest)(x, mask, deterministic=True)
      return jnp.sum(y ** 2), y
    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  (_, y), (gp, gx) = run(params, x)
  assert y.shape == x.shape and y.dtype == x.dtype
  leaves = jax.tree.leaves(gp)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves + [gx])
  assert float(jnp.abs(gx).max()) > 0
  assert np.all(np.asarray(gx[1, 7:]) == 0)  # padded inputs get no gradient
  if wavelet in ("ada", "ortho", "adalift"):
    transform_grads = jax.tree.leaves(nnx.state(nnx.merge(graphdef, gp, rest).transform, nnx.Param))
    assert any(float(jnp.abs(g).max()) > 0 for g in transform_grads)
  # Values at padded positions never reach the outputs at real positions.
  noise = jnp.asarray(100 * RNG.standard_normal(x.shape), jnp.float32)
  (_, y2), _ = run(params, jnp.where(mask[..., None], x, noise))
  np.testing.assert_array_equal(np.where(mask[..., None], y, 0), np.where(mask[..., None], y2, 0))


def _support(wavelet, n, level, mode, valid):
  """Brute-force band masks: PyWavelets Jacobian on unit vectors, any dependence on a token."""
  cols = [pywt.wavedec(e, wavelet, mode=mode, level=level) for e in np.eye(n)]
  masks = []
  for b in range(len(cols[0])):
    jac = np.stack([c[b] for c in cols], 1)  # [coeffs, n]
    masks.append((np.abs(jac) > 1e-12).astype(int) @ valid.T.astype(int) > 0)
  return [jnp.asarray(m.T) for m in masks]


def test_matches_a_manual_composition_with_pywavelets():
  n, level, wavelet, mode = 13, 2, "db2", "periodization"
  m = _build(wavelet=wavelet, levels=level)
  x = RNG.standard_normal((2, n, DIM)).astype(np.float32)
  valid = np.asarray(_mask(n, [n, 8]))
  y = _apply(m, jnp.asarray(x), jnp.asarray(valid))
  bands = pywt.wavedec(np.where(valid[..., None], x, 0).astype(np.float64), wavelet, mode=mode,
                       level=level, axis=1)
  outs = []
  for mixer, band, band_mask in zip(m.mixers, bands, _support(wavelet, n, level, mode, valid)):
    out = mixer(jnp.asarray(band, jnp.float32), band_mask, deterministic=True)
    outs.append(np.where(np.asarray(band_mask)[..., None], np.asarray(out, np.float64), 0))
  ref = pywt.waverec(outs, wavelet, mode=mode, axis=1)[:, :n]
  np.testing.assert_allclose(y, ref, atol=1e-4)


# (wavelet, options, inner, levels): every non-wrapping transform with softmax, and every other
# available inner mixer with one of them.
LENGTH_CASES = [("db2", {"mode": "zero"}, "softmax", 2), ("bior2.2", {"mode": "zero"}, "softmax", 2),
                ("ada", {"wlen": 4, "mode": "zero"}, "softmax", 2),
                ("lift", {}, "softmax", 2)] + [
                    ("lift", {}, inner, 1) for inner in AVAILABLE_INNER if inner != "softmax"]


@pytest.mark.parametrize("wavelet,options,inner,levels", LENGTH_CASES,
                         ids=[f"{w}-{i}" for w, _, i, _ in LENGTH_CASES])
def test_amount_of_padding_does_not_change_real_outputs(wavelet, options, inner, levels):
  """With a non-wrapping boundary and padding at the end, 9 real tokens padded to 16 or to 24
  give the same outputs: needs padded positions zeroed, the band masks to exclude every
  coefficient that only sees padding, and those coefficients' outputs dropped."""
  m = _build(wavelet=wavelet, levels=levels, inner=inner, inner_options=INNER[inner], **options)
  x = jnp.asarray(RNG.standard_normal((1, 24, DIM)), jnp.float32)
  short = _apply(m, x[:, :16], _mask(16, [9]))
  long = _apply(m, x, _mask(24, [9]))
  np.testing.assert_allclose(short[:, :9], long[:, :9], atol=1e-5)


def test_share_inner_uses_one_mixer_for_every_band():
  shared = _build(wavelet="db2", levels=2, share_inner=True)
  separate = _build(wavelet="db2", levels=2)
  assert len(shared.mixers) == 1
  count = lambda m: sum(p.size for p in jax.tree.leaves(nnx.state(m, nnx.Param)))
  assert count(separate) == 3 * count(shared)
  x = jnp.asarray(RNG.standard_normal((1, 8, DIM)), jnp.float32)
  assert _apply(shared, x, _mask(8, [8])).shape == x.shape


def test_bf16_inputs():
  m = _build(wavelet="ada", wlen=4)
  x = jnp.asarray(RNG.standard_normal((1, 8, DIM)), jnp.bfloat16)
  y = _apply(m, x, _mask(8, [6]))
  assert y.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(y.astype(jnp.float32))))


def test_option_errors():
  with pytest.raises(ValueError, match="mode"):
    _build(wavelet="ada", mode="mirror")
  with pytest.raises(ValueError, match="wlen applies"):
    _build(wavelet="db2", wlen=8)
  with pytest.raises(ValueError, match="cannot be wavspa"):
    _build(inner="wavspa")
  with pytest.raises(ValueError, match="no option"):
    _build(inner_options={"bogus": 1})
  with pytest.raises(ValueError, match="too short"):
    _build(levels=3)(jnp.zeros((1, 4, DIM)), _mask(4, [4]))
