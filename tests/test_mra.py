"""Tests of MRA-2 attention (lra_wavelet/attention/mra.py).

References: exact softmax (``dense_attention``) where the budget covers every block, and a
step-by-step NumPy transcription of the published algorithm (tests/mra_reference.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lra_wavelet.attention import build
from lra_wavelet.attention.mra import (from_patch_order, mra2_attention, num_selected_blocks,
                                       to_patch_order)
from lra_wavelet.attention.softmax import dense_attention
from tests.mra_reference import mra2_reference


def _qkv(rng, b, h, n, dh, dtype=np.float32):
  return tuple(rng.standard_normal((b, h, n, dh)).astype(dtype) for _ in range(3))


def _masks(rng, n):
  """bool[3, n]: trailing padding that leaves whole blocks empty, random holes, no padding."""
  mask = np.ones((3, n), bool)
  mask[0, int(0.55 * n):] = False
  mask[1] = rng.random(n) > 0.2
  return mask


def _at_valid(x, mask):
  return np.asarray(x) * np.asarray(mask)[:, None, :, None]


@functools.partial(jax.jit, static_argnames=("fn",))
def _value_and_grads(q, k, v, mask, w, fn):
  """Output and d/d(q, k, v) of sum(out * w) over the valid query positions."""
  def loss(q, k, v):
    out = fn(q, k, v, mask)
    return jnp.sum(jnp.where(mask[:, None, :, None], out * w, 0.0)), out
  (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v)
  return out, grads


@pytest.mark.parametrize("mode,n,padded", [("full", 128, False), ("full", 100, True),
                                           ("sparse", 96, True)])
def test_full_budget_is_exact_softmax_with_gradients(mode, n, padded):
  rng = np.random.default_rng(0)
  q, k, v = _qkv(rng, 3, 2, n, 16)
  mask = _masks(rng, n) if padded else np.ones((3, n), bool)
  w = rng.standard_normal(q.shape).astype(np.float32)
  nb = -(-n // 32)
  assert num_selected_blocks(n, nb) == nb * nb
  mra = functools.partial(mra2_attention, block_per_row=nb, approx_mode=mode,
                          initial_prior_first_n_blocks=1)
  out, grads = _value_and_grads(q, k, v, mask, w, mra)
  ref, ref_grads = _value_and_grads(q, k, v, mask, w, dense_attention)
  np.testing.assert_allclose(_at_valid(out, mask), _at_valid(ref, mask), atol=1e-5)
  assert np.all(np.asarray(out)[~np.broadcast_to(mask[:, None, :, None], out.shape)] == 0)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=1e-5)


@pytest.mark.parametrize("n,block_per_row,first_n,diagonal_n,mode", [
    (128, 1, 0, 0, "full"), (128, 1, 1, 3, "full"), (128, 2, 2, 0, "sparse"),
    (256, 1, 1, 1, "sparse"), (256, 3, 1, 1, "full"), (256, 2, 0, 2, "full")])
def test_matches_published_algorithm(n, block_per_row, first_n, diagonal_n, mode):
  rng = np.random.default_rng(n + 10 * block_per_row + first_n + diagonal_n)
  q, k, v = _qkv(rng, 3, 2, n, 16)
  mask = _masks(rng, n)
  options = dict(block_per_row=block_per_row, approx_mode=mode,
                 initial_prior_first_n_blocks=first_n,
                 initial_prior_diagonal_n_blocks=diagonal_n)
  out = jax.jit(functools.partial(mra2_attention, **options))(q, k, v, mask)
  ref = mra2_reference(q, k, v, mask, **options)
  np.testing.assert_allclose(_at_valid(out, mask), ref, atol=1e-4)
  # The budget is far from every block, so this is not softmax.
  assert np.abs(_at_valid(out - dense_attention(q, k, v, mask), mask)).max() > 1e-2
  if first_n == diagonal_n == 0:
    # Without priors the k-th selection score has no exact tie, so the published rule
    # (remove every block scoring >= the k-th) equals removing the k selected blocks.
    ref = mra2_reference(q, k, v, mask, **options, removal="threshold")
    np.testing.assert_allclose(_at_valid(out, mask), ref, atol=1e-4)


@pytest.mark.parametrize("mode", ["full", "sparse"])
def test_any_length_small_budget_and_padding_invariance(mode):
  # n = 70: three blocks, the last one partial; k = 3 (the published code needs k % 4 == 0).
  rng = np.random.default_rng(3)
  n, n_padded = 70, 96
  assert num_selected_blocks(n, 1) == 3
  q, k, v = _qkv(rng, 3, 2, n, 16)
  mask = _masks(rng, n)
  options = dict(block_per_row=1, approx_mode=mode, initial_prior_diagonal_n_blocks=1)
  run = jax.jit(functools.partial(mra2_attention, **options))
  out = np.asarray(run(q, k, v, mask))
  assert out.shape == q.shape and np.all(np.isfinite(out))
  # Same as the published algorithm on the sequence padded by hand to a multiple of 32.
  pad = lambda x: np.pad(x, ((0, 0), (0, 0), (0, n_padded - n), (0, 0)))
  ref = mra2_reference(pad(q), pad(k), pad(v), np.pad(mask, ((0, 0), (0, n_padded - n))),
                       **options)[:, :, :n]
  np.testing.assert_allclose(_at_valid(out, mask), ref, atol=1e-4)
  # Whatever sits at padded positions changes nothing.
  noise = lambda x: np.where(mask[:, None, :, None], x, 100 * rng.standard_normal(x.shape))
  out_noisy = np.asarray(run(noise(q), noise(k), noise(v), mask))
  np.testing.assert_allclose(out_noisy, out, atol=1e-6)
  assert np.all(out[~np.broadcast_to(mask[:, None, :, None], out.shape)] == 0)


def test_bf16_inputs_are_close_to_float32():
  rng = np.random.default_rng(4)
  q, k, v = (jnp.asarray(x, jnp.bfloat16) for x in _qkv(rng, 1, 2, 128, 16))
  mask = np.ones((1, 128), bool)
  mask[0, 100:] = False
  run = jax.jit(functools.partial(mra2_attention, block_per_row=2,
                                  initial_prior_first_n_blocks=1))
  out = run(q, k, v, mask)
  assert out.dtype == jnp.bfloat16
  ref = run(*(x.astype(jnp.float32) for x in (q, k, v)), mask)
  err = np.abs(_at_valid(np.asarray(out, np.float32) - np.asarray(ref), mask)).max()
  assert err < 2e-2, err
  grads = jax.jit(jax.grad(lambda q: run(q, k, v, mask).astype(jnp.float32).sum()))(q)
  assert grads.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(grads, np.float32)))


def test_chunked_heads_equal_all_at_once():
  rng = np.random.default_rng(5)
  q, k, v = _qkv(rng, 2, 2, 96, 16)
  mask = _masks(rng, 96)[:2]
  w = rng.standard_normal(q.shape).astype(np.float32)
  run = lambda chunk: functools.partial(mra2_attention, block_per_row=1, chunk_size=chunk,
                                        initial_prior_first_n_blocks=1)
  out, grads = _value_and_grads(q, k, v, mask, w, run(None))
  out_c, grads_c = _value_and_grads(q, k, v, mask, w, run(3))  # one chunk of 3, one of 1
  np.testing.assert_allclose(np.asarray(out_c), np.asarray(out), atol=1e-6)
  for g, gc in zip(grads, grads_c):
    assert np.abs(np.asarray(g)).max() > 0
    np.testing.assert_allclose(np.asarray(gc), np.asarray(g), atol=1e-6)


def test_patch_order_is_a_bijection_of_4x8_patches():
  height, width = 8, 24
  idx = np.asarray(to_patch_order(jnp.arange(height * width)[None], (height, width)))[0]
  assert sorted(idx.tolist()) == list(range(height * width))
  for block in idx.reshape(-1, 32):
    rows, cols = block // width, block % width
    assert rows.min() % 4 == 0 and cols.min() % 8 == 0
    np.testing.assert_array_equal(rows, rows.min() + np.repeat(np.arange(4), 8))
    np.testing.assert_array_equal(cols, cols.min() + np.tile(np.arange(8), 4))
  x = np.random.default_rng(6).standard_normal((2, 3, height * width, 5)).astype(np.float32)
  y = to_patch_order(x, (height, width), axis=2)
  assert not np.allclose(y, x)
  np.testing.assert_array_equal(np.asarray(from_patch_order(y, (height, width), axis=2)), x)
  with pytest.raises(ValueError, match="divisible"):
    to_patch_order(jnp.zeros((1, 8 * 20)), (8, 20))
  with pytest.raises(ValueError, match="CLS"):
    to_patch_order(jnp.zeros((1, 8 * 24 + 1)), (8, 24))


def test_mixers_in_the_registry():
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.standard_normal((2, 128, 32)), jnp.float32)
  mask = jnp.asarray(np.arange(128)[None, :] < np.array([[128], [90]]))
  outs = {}
  for name, image_shape in (("mra", None), ("mra_sparse", None), ("mra", (8, 16))):
    if True:
      mixer = build(name, dim=32, num_heads=2, rngs=nnx.Rngs(0), block_per_row=1,
                    initial_prior_first_n_blocks=1, image_shape=image_shape)
      outs[name, image_shape] = np.asarray(mixer(x, mask, deterministic=True))
      assert outs[name, image_shape].shape == (2, 128, 32)
  # Same parameters (same seed): the mode and the token order both change the output.
  assert np.abs(outs["mra", None] - outs["mra_sparse", None]).max() > 1e-3
  assert np.abs(outs["mra", None] - outs["mra", (8, 16)]).max() > 1e-3
  # With every block selected, 2-D mode is still exact attention in the original order.
  exact = build("mra", dim=32, num_heads=2, rngs=nnx.Rngs(0), block_per_row=4,
                image_shape=(8, 16))
  q, k, v = exact.project(x)
  np.testing.assert_allclose(
      _at_valid(exact.attend(q, k, v, mask, deterministic=True), mask),
      _at_valid(dense_attention(q, k, v, mask), mask), atol=1e-5)
  for bad in (dict(block_per_row=0), dict(initial_prior_first_n_blocks=-1),
              dict(image_shape=(8, 12)), dict(image_shape=(8, 16), block_size=16)):
    with pytest.raises(ValueError):
      build("mra", dim=32, num_heads=2, rngs=nnx.Rngs(0), **bad)
  with pytest.raises(ValueError, match="approx_mode"):
    mra2_attention(q, k, v, mask, block_per_row=1, approx_mode="dense")


def test_memory_is_a_tenth_of_dense_softmax():
  n = 16384
  spec = jax.ShapeDtypeStruct((1, 2, n, 32), jnp.float32)
  mask = jax.ShapeDtypeStruct((1, n), jnp.bool_)
  temp = lambda f: f.lower(spec, spec, spec, mask).compile().memory_analysis().temp_size_in_bytes
  mra = temp(jax.jit(functools.partial(mra2_attention, block_per_row=8)))
  dense = temp(jax.jit(dense_attention))
  assert dense >= 2 * n * n * 4  # the [2, n, n] float32 scores, at least
  assert mra <= dense / 10, (mra, dense)
