"""Tests of the WERSA mixer (lra_wavelet/attention/wersa.py).

References: a float64 NumPy brute force of the normalised random-feature kernel, PyWavelets
for the bidirectional Haar gating, explicit trailing-window means for the causal one.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
from flax import nnx

from lra_wavelet.attention import build
from lra_wavelet.attention import wersa


def _mask(n, lengths):
  return np.arange(n)[None, :] < np.asarray(lengths)[:, None]


def _brute_force(qf, qa, kf, ka, v, mask, causal, eps):
  """Quadratic evaluation in float64 of sum_s phi_q.phi_k v_s / (sum_s phi_q.phi_k + eps)."""
  phi_q = np.asarray(qf, np.float64) * np.exp(np.asarray(qa, np.float64))[..., None]
  phi_k = np.asarray(kf, np.float64) * np.exp(np.asarray(ka, np.float64))[..., None]
  scores = np.einsum("bhtr,bhsr->bhts", phi_q, phi_k)
  n = scores.shape[-1]
  allowed = np.broadcast_to(mask[:, None, None, :], scores.shape)
  if causal:
    allowed = allowed & np.tril(np.ones((n, n), bool))
  scores = np.where(allowed, scores, 0.0)
  return np.einsum("bhts,bhsd->bhtd", scores, np.asarray(v, np.float64)) / (
      scores.sum(-1, keepdims=True) + eps)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind,scale", [("relu", 1.0), ("favor", 1.0), ("favor", 6.0)])
def test_linear_attention_equals_quadratic_kernel(causal, kind, scale):
  # scale 6 puts favor key log-features down to about -260: exp() of that underflows float32
  # (below -87), so the result is right only if the stabilisation is.
  b, h, n, dh, r, eps = 2, 2, 11, 8, 16, 1e-6
  kq, kk, kv, kw = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(kq, (b, h, n, dh))
  k = scale * jax.random.normal(kk, (b, h, n, dh))
  v = jax.random.normal(kv, (b, h, n, dh))
  w = jax.random.normal(kw, (dh, r))
  mask = _mask(n, [n, 7])
  features = functools.partial(wersa.spectral_features, w=w, bandwidth=1.3, kind=kind)
  out = wersa.linear_attention(q, k, v, jnp.asarray(mask), features, causal=causal,
                               chunk_size=4, eps=eps)
  qf, qa = features(q)
  kf, ka = features(k)
  expected = _brute_force(qf, qa, kf, ka, v, mask, causal, eps)
  assert np.all(np.isfinite(out))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_relu_features_are_the_papers_formula():
  x = jax.random.normal(jax.random.key(1), (3, 5))
  w = jax.random.normal(jax.random.key(2), (5, 7))
  f, a = wersa.spectral_features(x, w, 0.7, "relu")
  expected = np.maximum((np.asarray(x) / 0.7) @ np.asarray(w), 0.0) / np.sqrt(7)
  np.testing.assert_allclose(f * np.exp(a)[..., None], expected, rtol=1e-6, atol=1e-6)
  f, a = wersa.spectral_features(x, w, 0.7, "favor")
  xs = np.asarray(x, np.float64) / 0.7
  expected = np.exp(xs @ np.asarray(w) - 0.5 * (xs ** 2).sum(-1, keepdims=True)) / np.sqrt(7)
  np.testing.assert_allclose(f * np.exp(a)[..., None], expected, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_unit_gates_reconstruct_exactly(causal):
  x = jax.random.normal(jax.random.key(3), (2, 13, 6))  # 13: not a multiple of 2^3
  y = wersa.haar_gate(x, jnp.ones((2, 13, 4)), None, causal=causal)
  np.testing.assert_allclose(y, x, atol=1e-6)


def test_bidirectional_gating_matches_pywavelets():
  b, n, c, levels = 2, 13, 5, 3
  x = np.asarray(jax.random.normal(jax.random.key(4), (b, n, c)))
  gates = np.asarray(jax.random.uniform(jax.random.key(5), (b, n, levels + 1)))
  mask = _mask(n, [n, 10])
  y = wersa.haar_gate(jnp.asarray(x), jnp.asarray(gates), jnp.asarray(mask))

  n_pad = 16
  xp = np.zeros((b, n_pad, c))
  xp[:, :n] = np.where(mask[..., None], x, 0.0)
  coeffs = pywt.wavedec(xp, "haar", level=levels, mode="periodization", axis=1)
  gated = []
  for i, band in enumerate(coeffs):
    size = n_pad // band.shape[1]
    g = np.zeros((b, band.shape[1]))
    for bi in range(b):
      for j in range(band.shape[1]):
        pos = [p for p in range(j * size, (j + 1) * size) if p < n and mask[bi, p]]
        g[bi, j] = np.mean(gates[bi, pos, i]) if pos else 0.0
    gated.append(band * g[..., None])
  expected = pywt.waverec(gated, "haar", mode="periodization", axis=1)[:, :n]
  np.testing.assert_allclose(y, expected, atol=1e-5)


def test_causal_gating_matches_trailing_window_means():
  b, n, c, levels = 2, 21, 3, 3  # 21: three partial blocks of 2^3
  x = np.asarray(jax.random.normal(jax.random.key(6), (b, n, c)), np.float64)
  gates = np.asarray(jax.random.uniform(jax.random.key(7), (b, n, levels + 1)))
  y = wersa.haar_gate(jnp.asarray(x, jnp.float32), jnp.asarray(gates), None, causal=True)

  def trailing_mean(t, width):  # mean of x[t-width+1 .. t], zeros before the start
    return sum(x[:, s] for s in range(t - width + 1, t + 1) if s >= 0) / width

  expected = np.zeros_like(x)
  for t in range(n):
    means = [trailing_mean(t, 2 ** j) for j in range(levels + 1)]
    expected[:, t] = gates[:, t, 0, None] * means[levels]
    for j in range(1, levels + 1):
      expected[:, t] += gates[:, t, levels + 1 - j, None] * (means[j - 1] - means[j])
  np.testing.assert_allclose(y, expected, atol=1e-5)


@nnx.jit(static_argnames="deterministic")
def _apply(model, x, mask, deterministic=True):
  return model(x, mask, deterministic=deterministic)


def _mixer(causal, feature_map="relu", **options):
  return build("wersa", dim=16, num_heads=2, rngs=nnx.Rngs(0), causal=causal,
               feature_map=feature_map, decomp_levels=3, random_features=16, chunk_size=4,
               **options)


@pytest.mark.parametrize("causal,feature_map", [(False, "relu"), (True, "relu"),
                                                (False, "favor"), (True, "favor")])
def test_padded_tokens_do_not_change_real_outputs(causal, feature_map):
  model = _mixer(causal, feature_map)
  n = 14
  x = jax.random.normal(jax.random.key(8), (2, n, 16))
  mask = jnp.asarray(_mask(n, [n, 9]))
  noise = 5.0 * jax.random.normal(jax.random.key(9), x.shape)
  x2 = jnp.where(mask[..., None], x, noise)
  y1, y2 = _apply(model, x, mask), _apply(model, x2, mask)
  np.testing.assert_allclose(np.asarray(y1)[mask], np.asarray(y2)[mask], atol=1e-6)


@pytest.mark.parametrize("feature_map", ["relu", "favor"])
def test_causal_output_ignores_the_future(feature_map):
  model = _mixer(True, feature_map)
  n = 16
  x = jax.random.normal(jax.random.key(10), (1, n, 16))
  mask = jnp.ones((1, n), bool)
  y = np.asarray(_apply(model, x, mask))
  for t in (0, 5, 8, 13):
    x2 = x.at[:, t + 1:].add(3.0 * jax.random.normal(jax.random.key(t), (1, n - t - 1, 16)))
    y2 = np.asarray(_apply(model, x2, mask))
    np.testing.assert_allclose(y2[:, :t + 1], y[:, :t + 1], atol=1e-6)
    assert np.abs(y2[:, t + 1:] - y[:, t + 1:]).max() > 1e-3  # the future does reach t+1..


@pytest.mark.parametrize("causal,feature_map", [(False, "relu"), (True, "favor")])
def test_gradients_are_finite(causal, feature_map):
  model = _mixer(causal, feature_map)
  x = jax.random.normal(jax.random.key(11), (2, 10, 16))
  mask = jnp.asarray(_mask(10, [10, 6]))
  grads = nnx.jit(nnx.grad(lambda m: jnp.mean(m(x, mask) ** 2)))(model)
  leaves = jax.tree.leaves(grads)
  assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert float(jnp.abs(grads["gates"]["scale_weight"][...]).max()) > 0  # the gates are used


def test_random_matrix_is_state_but_not_a_parameter():
  model = _mixer(False, redraw=True)
  params, everything = nnx.state(model, nnx.Param), nnx.state(model)
  assert "features" not in params and "features" in everything
  assert everything["features"][...].shape == (8, 16)
  assert isinstance(model.features, nnx.Variable) and not isinstance(model.features, nnx.Param)
  x, mask = jnp.ones((1, 8, 16)), jnp.ones((1, 8), bool)
  before = np.asarray(model.features[...])
  _apply(model, x, mask, deterministic=True)
  np.testing.assert_array_equal(model.features[...], before)
  _apply(model, x, mask, deterministic=False)  # redraw on a training call
  assert np.abs(np.asarray(model.features[...]) - before).max() > 0


def test_bf16_inputs_and_bad_options():
  model = _mixer(True)
  y = _apply(model, jnp.ones((1, 6, 16), jnp.bfloat16), jnp.ones((1, 6), bool))
  assert y.shape == (1, 6, 16) and bool(jnp.all(jnp.isfinite(y)))
  with pytest.raises(ValueError, match="feature_map"):
    _mixer(False, feature_map="cosine")
  with pytest.raises(ValueError, match="decomp_levels"):
    build("wersa", dim=16, num_heads=2, rngs=nnx.Rngs(0), decomp_levels=0)


@functools.lru_cache
def _train_step_temp_bytes(name, n, **options):
  model = build(name, dim=512, num_heads=8, rngs=nnx.Rngs(0), **options)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, x):
    return jnp.sum(nnx.merge(graphdef, params, rest)(x, jnp.ones((1, n), bool)))

  x = jax.ShapeDtypeStruct((1, n, 512), jnp.float32)
  compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("causal", [False, True])
def test_memory_is_a_small_fraction_of_dense(causal):
  n = 16384  # compiled only, never executed
  # the quadratic XLA kernel ("auto" picks a blockwise one at this length); causal or not,
  # it holds the same [H, N, N] buffers
  dense = _train_step_temp_bytes("softmax", n, implementation="xla")
  ours = _train_step_temp_bytes("wersa", n, causal=causal)
  assert dense > 8 * n * n * 4  # sanity: the dense step holds at least one [H, N, N] buffer
  assert ours * 20 <= dense, (ours, dense)
