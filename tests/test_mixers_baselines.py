"""Tests of the baseline mixers: linear, performer (linear.py), linformer, local, fnet and
fourier_attention (fourier.py).

References: a float64 NumPy brute force of the normalised kernel attention, exact softmax
(``dense_attention``), a NumPy masked softmax with the band + global mask, and np.fft.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lra_wavelet.attention import build
from lra_wavelet.attention import fourier, linear, linformer, local
from lra_wavelet.attention.softmax import dense_attention

B, N, D, HEADS = 2, 12, 8, 2
LENGTHS = (N, 7)

# (name, options) of every module variant the contract test runs.
MIXERS = [
    ("linear", {}),
    ("linear", dict(causal=True, chunk_size=4)),
    ("performer", dict(num_features=16)),
    ("performer", dict(kernel="relu", num_features=16, causal=True, chunk_size=5)),
    ("linformer", dict(k=4, max_len=16)),
    ("linformer", dict(k=4, max_len=N, share_kv=True)),
    ("local", dict(window=4, num_global=1)),
    ("local", dict(window=5, num_global=2, causal=True)),
    ("fnet", {}),
    ("fourier_attention", {}),
]


def _ids(cases):
  return [f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items())}" for name, opts in cases]


def _mask(n, lengths):
  return np.arange(n)[None, :] < np.asarray(lengths)[:, None]


def _randn(seed, *shape):
  """Standard normal float32 array (NumPy's generator: no per-shape jax.random compiles)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _inputs(seed=0, n=N):
  return _randn(seed, B, n, D)


def _model(name, opts):
  return build(name, dim=D, num_heads=HEADS, rngs=nnx.Rngs(params=0, dropout=1), **opts)


_linear_attention = jax.jit(linear.linear_attention,
                            static_argnames=("causal", "chunk_size", "eps"))
_local_attention = jax.jit(local.local_attention,
                           static_argnames=("window", "num_global", "causal"))
_linformer_attention = jax.jit(linformer.linformer_attention)
_dense = jax.jit(dense_attention, static_argnames="causal")


@functools.partial(jax.jit, static_argnums=0)
def _output_and_grads(graphdef, params, rest, x, mask):
  """Training-mode output [B, N, D] and the gradients of a loss on the real positions with
  respect to the parameters and x. Pure: state changes (rng counters, redraws) are dropped."""
  def loss(params, x):
    y = nnx.merge(graphdef, params, rest)(x, mask, deterministic=False)
    return jnp.sum(jnp.where(mask[..., None], y, 0.0) ** 2), y
  (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
  return y, grads


@functools.partial(jax.jit, static_argnums=0)
def _output(graphdef, params, rest, x, mask):
  return nnx.merge(graphdef, params, rest)(x, mask, deterministic=True)


# ----------------------------------------------------------------------------- every mixer


@pytest.mark.parametrize("name,opts", MIXERS, ids=_ids(MIXERS))
def test_mixer_contract(name, opts):
  """Shape, finite gradients under jit, padding invariance, causality where asked for."""
  graphdef, params, rest = nnx.split(_model(name, opts), nnx.Param, ...)
  mask = _mask(N, LENGTHS)
  full = jnp.ones((B, N), bool)
  x = _inputs(0)

  def run(x, mask):
    return _output_and_grads(graphdef, params, rest, x, jnp.asarray(mask))

  y, (g_params, g_x) = run(x, mask)
  assert y.shape == (B, N, D) and y.dtype == jnp.float32
  assert np.all(np.isfinite(y))
  assert np.all(np.isfinite(g_x)) and np.abs(g_x).sum() > 0
  leaves = jax.tree.leaves(g_params)
  assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
  if name != "fnet":  # fnet has no parameters
    assert leaves and sum(float(np.abs(leaf).sum()) for leaf in leaves) > 0

  # Padding: new content at the padded positions leaves the real positions' outputs alone...
  x_other = jnp.where(mask[..., None], x, 100.0 * _inputs(1))
  y_other, _ = run(x_other, mask)
  np.testing.assert_allclose(np.asarray(y)[mask], np.asarray(y_other)[mask], atol=1e-5,
                             rtol=1e-5)
  # ... though the change does matter when those positions are real tokens.
  assert not np.allclose(run(x, full)[0], run(x_other, full)[0], atol=1e-3)

  if opts.get("causal"):  # outputs up to t ignore the tokens after t
    t = 5
    x_future = x.at[:, t + 1:].set(_inputs(2)[:, t + 1:] * 10.0)
    y_now, y_future = run(x, full)[0], run(x_future, full)[0]
    np.testing.assert_allclose(y_now[:, :t + 1], y_future[:, :t + 1], atol=1e-5, rtol=1e-5)
    assert not np.allclose(y_now[:, t + 1:], y_future[:, t + 1:], atol=1e-3)


# One variant per functional core.
BF16_MIXERS = [MIXERS[i] for i in (1, 2, 4, 7, 8, 9)]


@pytest.mark.parametrize("name,opts", BF16_MIXERS, ids=_ids(BF16_MIXERS))
def test_bf16(name, opts):
  """bf16 parameters and inputs (the trainer's bf16 compute path) give bf16 outputs close to
  the float32 ones."""
  graphdef, params, rest = nnx.split(_model(name, opts), nnx.Param, ...)
  params16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
  x, mask = _inputs(), jnp.asarray(_mask(N, LENGTHS))
  y32 = _output(graphdef, params, rest, x, mask)
  y16 = _output(graphdef, params16, rest, x.astype(jnp.bfloat16), mask)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("name,opts", [
    ("performer", dict(kernel="gaussian")),
    ("performer", dict(num_features=0)),
    ("linear", dict(chunk_size=0)),
    ("linformer", dict(k=4)),  # no max_len
    ("local", dict(window=1)),
    ("local", dict(num_global=-1)),
    ("fourier_attention", dict(inner="no_such_mixer")),
])
def test_bad_options_raise(name, opts):
  with pytest.raises(ValueError):
    _model(name, opts)


# ----------------------------------------------------------------------------- linear / performer


def _brute_force(qf, qa, kf, ka, v, mask, causal, eps):
  """float64 sum_s phi_q.phi_k v_s / (sum_s phi_q.phi_k + eps exp(a_t + M_t)) with phi = f exp(a)
  and M_t the largest key log-scale a_s that query t sees (the documented relative eps)."""
  qf, qa, kf, ka, v = (np.asarray(t, np.float64) for t in (qf, qa, kf, ka, v))
  phi_q = qf * np.exp(qa)[..., None]
  phi_k = kf * np.exp(ka)[..., None]
  scores = np.einsum("bhtr,bhsr->bhts", phi_q, phi_k)
  n = scores.shape[-1]
  allowed = np.broadcast_to(mask[:, None, None, :], scores.shape)
  if causal:
    allowed = allowed & np.tril(np.ones((n, n), bool))
  scores = np.where(allowed, scores, 0.0)
  top = np.where(allowed, ka[:, :, None, :], -np.inf).max(-1)
  den = scores.sum(-1) + eps * np.exp(qa + top)
  return np.einsum("bhts,bhsd->bhtd", scores, v) / den[..., None]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("features", ["elu", "relu", "softmax", "softmax-tiny"])
def test_linear_attention_equals_quadratic_kernel(features, causal):
  b, h, n, dh, eps = 2, 2, 11, 8, 1e-6
  q, k, v = (_randn(seed, b, h, n, dh) for seed in (0, 1, 2))
  if features == "softmax-tiny":
    # |q| = |k| = 25: every phi(q).phi(k) is below exp(-104), i.e. 0 in float32, so without
    # the stabilisation every output would be 0 / (0 + eps) = 0.
    q, k = (25.0 * t / jnp.linalg.norm(t, axis=-1, keepdims=True) for t in (q, k))
  mask = _mask(n, [n, 6])
  if features == "elu":
    qf, kf = linear.elu_features(q), linear.elu_features(k)
    qa = ka = jnp.zeros((b, h, n))
  else:
    w = linear.orthogonal_random_matrix(jax.random.key(3), dh, 24)
    kernel = "relu" if features == "relu" else "softmax"
    (qf, qa), (kf, ka) = (linear.random_features(t, w, kernel) for t in (q, k))
  out = _linear_attention(qf, kf, v, jnp.asarray(mask), k_log=ka, causal=causal, chunk_size=4,
                          eps=eps)
  expected = _brute_force(qf, qa, kf, ka, v, mask, causal, eps)
  if features == "softmax-tiny":
    assert float(jnp.max(qa) + jnp.max(ka)) < -104
    assert np.abs(expected).mean() > 0.1
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_random_features_formulas():
  x, w = _randn(1, 3, 4), _randn(2, 4, 6)
  xs = np.asarray(x, np.float64) / 4 ** 0.25
  proj = xs @ np.asarray(w, np.float64)
  f, a = linear.random_features(x, w, "softmax")
  np.testing.assert_allclose(np.asarray(f) * np.exp(np.asarray(a))[:, None],
                             np.exp(proj - 0.5 * (xs ** 2).sum(-1, keepdims=True)) / np.sqrt(6),
                             rtol=1e-5)
  f, a = linear.random_features(x, w, "relu")
  np.testing.assert_allclose(f, np.maximum(proj, 0) / np.sqrt(6), rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(a, 0.0)


def test_orthogonal_random_matrix_blocks_are_orthogonal():
  dim, m = 8, 20
  w = np.asarray(linear.orthogonal_random_matrix(jax.random.key(3), dim, m), np.float64)
  assert w.shape == (dim, m)
  for start in range(0, m, dim):
    block = w[:, start:start + dim]
    gram = block.T @ block
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-4)
  # Column lengths are chi(dim)-distributed: mean sqrt(dim) roughly, not all equal.
  lengths = np.linalg.norm(w, axis=0)
  assert 0.5 * np.sqrt(dim) < lengths.mean() < 1.5 * np.sqrt(dim) and lengths.std() > 0.1


def test_performer_error_falls_with_more_features():
  b, h, n, dh = 2, 2, 16, 8
  q, k = 0.5 * _randn(4, b, h, n, dh), 0.5 * _randn(5, b, h, n, dh)
  v = _randn(6, b, h, n, dh)
  mask = jnp.asarray(_mask(n, [n, 10]))
  exact = np.asarray(_dense(q, k, v, mask))

  # The first m columns of an orthogonal random matrix are one with m features.
  ws = jax.jit(jax.vmap(lambda key: linear.orthogonal_random_matrix(key, dh, 1024)))(
      jax.random.split(jax.random.key(100), 4))
  attend = jax.jit(jax.vmap(lambda w: linear.performer_attention(q, k, v, mask, w)))

  def mean_error(m):  # averaged over the 4 draws
    return float(np.abs(np.asarray(attend(ws[..., :m])) - exact).mean())

  few, many = mean_error(16), mean_error(1024)
  assert many < few / 3, (few, many)
  assert many < 0.03, many


def test_performer_projection_is_state_not_param_and_redraws_in_training():
  x, mask = _inputs(), jnp.ones((B, N), bool)
  call = nnx.jit(lambda model, deterministic: model(x, mask, deterministic=deterministic),
                 static_argnums=1)
  model = _model("performer", dict(num_features=16, redraw=True))
  assert "projection" not in nnx.state(model, nnx.Param)
  assert "projection" in nnx.state(model, linear.RandomProjection)
  w0 = np.asarray(model.projection[...])
  call(model, True)
  np.testing.assert_array_equal(model.projection[...], w0)
  call(model, False)
  w1 = np.asarray(model.projection[...])
  assert w1.shape == w0.shape and not np.allclose(w1, w0)
  call(model, False)
  assert not np.allclose(model.projection[...], w1)
  fixed = _model("performer", dict(num_features=16))
  w_fixed = np.asarray(fixed.projection[...])
  call(fixed, False)
  np.testing.assert_array_equal(fixed.projection[...], w_fixed)


# ----------------------------------------------------------------------------- linformer


def test_linformer_identity_projections_equal_softmax():
  b, h, n, dh = 2, 2, 10, 4
  q, k, v = (_randn(seed, b, h, n, dh) for seed in (5, 6, 7))
  eye = jnp.eye(n)
  out = _linformer_attention(q, k, v, jnp.ones((b, n), bool), eye, eye)
  np.testing.assert_allclose(out, _dense(q, k, v), atol=1e-5, rtol=1e-5)


def test_linformer_short_input_equals_padded_input():
  b, h, n, max_len, dh, kdim = 2, 2, 10, 16, 4, 6
  q, k, v = (_randn(seed, b, h, max_len, dh) for seed in (8, 9, 10))
  e, f = _randn(11, max_len, kdim), _randn(12, max_len, kdim)
  short = _linformer_attention(q[:, :, :n], k[:, :, :n], v[:, :, :n], None, e, f)
  padded = _linformer_attention(q, k, v, jnp.asarray(_mask(max_len, [n, n])), e, f)
  np.testing.assert_allclose(short, padded[:, :, :n], atol=1e-5, rtol=1e-5)
  # Reference: softmax over the explicitly compressed keys/values.
  kp = np.einsum("bhnd,nc->bhcd", k[:, :, :n], e[:n])
  vp = np.einsum("bhnd,nc->bhcd", v[:, :, :n], f[:n])
  np.testing.assert_allclose(short, _dense(q[:, :, :n], jnp.asarray(kp), jnp.asarray(vp)),
                             atol=1e-5, rtol=1e-5)


def test_linformer_rejects_longer_input():
  model = _model("linformer", dict(k=4, max_len=N - 2))
  with pytest.raises(ValueError, match="max_len"):
    model(_inputs(), jnp.ones((B, N), bool))


# ----------------------------------------------------------------------------- local


def _banded_reference(q, k, v, mask, window, num_global, causal):
  """float64 dense softmax with the band + global mask."""
  q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
  n = q.shape[2]
  i, j = np.arange(n)[:, None], np.arange(n)[None, :]
  allowed = (np.abs(i - j) <= window // 2) | (i < num_global) | (j < num_global)
  if causal:
    allowed &= j <= i
  allowed = allowed[None, None] & mask[:, None, None, :]
  scores = np.where(allowed, np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(q.shape[-1]), -np.inf)
  top = scores.max(-1, keepdims=True)
  p = np.where(allowed, np.exp(scores - np.where(np.isfinite(top), top, 0.0)), 0.0)
  total = p.sum(-1, keepdims=True)
  return np.einsum("bhqk,bhkd->bhqd", p / np.where(total > 0, total, 1.0), v)


def _qkv(seed, n=13, dh=4):
  return [_randn(seed + i, 2, 2, n, dh) for i in range(3)]


@pytest.mark.parametrize("num_global,causal", [(0, False), (2, True)])
def test_local_with_wide_window_equals_softmax(num_global, causal):
  q, k, v = _qkv(8)
  mask = jnp.asarray(_mask(13, [13, 8]))
  out = _local_attention(q, k, v, mask, window=26, num_global=num_global, causal=causal)
  np.testing.assert_allclose(out, _dense(q, k, v, mask, causal=causal), atol=1e-5,
                             rtol=1e-5)


@pytest.mark.parametrize("window,num_global,causal", [
    (2, 0, False), (5, 3, False), (4, 1, True), (7, 2, True),
    (22, 1, True), (24, 1, False)])  # band one short of every key (block path) / every key (exact core)
def test_local_equals_banded_dense_reference(window, num_global, causal):
  q, k, v = _qkv(9)
  mask = _mask(13, [13, 9])
  out = _local_attention(q, k, v, jnp.asarray(mask), window=window, num_global=num_global,
                              causal=causal)
  expected = _banded_reference(q, k, v, mask, window, num_global, causal)
  np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


def test_local_never_builds_an_n_by_n_array():
  n, window = 256, 16
  q, k, v = _qkv(10, n=n)
  jaxpr = jax.make_jaxpr(lambda q, k, v: local.local_attention(
      q, k, v, jnp.ones((2, n), bool), window=window, num_global=1))(q, k, v)
  largest = max(int(np.prod(var.aval.shape)) for eqn in jaxpr.jaxpr.eqns for var in eqn.outvars)
  assert largest <= 2 * 2 * n * 2 * window  # O(N * window), far below B*H*N*N = 262144


# ----------------------------------------------------------------------------- Fourier


def test_fnet_equals_numpy_fft():
  x = np.asarray(_inputs(11), np.float64)
  mask = _mask(N, LENGTHS)
  out = fourier.fnet_mixing(jnp.asarray(x, jnp.float32), jnp.asarray(mask))
  zeroed = np.where(mask[..., None], x, 0.0)
  expected = np.fft.fft(np.fft.fft(zeroed, axis=2), axis=1).real
  np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("n", [11, 12])
def test_fourier_tokens_round_trip(n):
  x = _inputs(12, n)
  tokens, back = jax.jit(lambda x: (lambda t: (t, fourier.from_fourier_tokens(t, n)))(
      fourier.to_fourier_tokens(x)))(x)
  assert tokens.shape == (B, 2 * (n // 2 + 1), D)
  np.testing.assert_allclose(back, x, atol=1e-5)


@pytest.mark.parametrize("n", [11, 12])
def test_fourier_attention_equals_numpy_reference(n):
  x = np.asarray(_inputs(13, n), np.float64)
  mask = _mask(n, [n, 7])

  def inner(t, m):  # single-head self-attention with identity projections
    return dense_attention(t[:, None], t[:, None], t[:, None], m)[:, 0]

  out = jax.jit(lambda x, m: fourier.fourier_attention(x, m, inner))(
      jnp.asarray(x, jnp.float32), jnp.asarray(mask))

  c = np.fft.rfft(np.where(mask[..., None], x, 0.0), axis=1, norm="ortho")
  t = np.concatenate([c.real, c.imag], axis=1)  # [B, 2M, D]
  scores = np.einsum("bqd,bkd->bqk", t, t) / np.sqrt(D)
  p = np.exp(scores - scores.max(-1, keepdims=True))
  u = np.einsum("bqk,bkd->bqd", p / p.sum(-1, keepdims=True), t)
  m = n // 2 + 1
  expected = np.fft.irfft(u[:, :m] + 1j * u[:, m:], n=n, axis=1, norm="ortho")
  np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)


def test_fourier_attention_passes_options_to_inner():
  model = _model("fourier_attention", dict(inner="local", inner_options=dict(window=4),
                                           qkv_dim=4, dropout=0.1))
  assert isinstance(model.inner, local.LocalAttention)
  assert model.inner.window == 4 and model.inner.head_dim == 2
  assert model.inner.dropout.rate == 0.1
