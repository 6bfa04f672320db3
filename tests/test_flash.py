"""Tests of blockwise attention (attention/flash.py) and the softmax dispatch (attention/softmax.py).

Reference: ``dense_attention``, which materialises the full score matrix. Values and
gradients (q, k, v) are compared with padding masks (including a sequence with no valid key
and masks with holes) and the causal mask, on lengths that are not multiples of the blocks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lra_wavelet.attention import build
from lra_wavelet.attention import flash, softmax
from lra_wavelet.attention.softmax import dense_attention, softmax_attention


def _inputs(b, h, n_q, n_k, d, seed=0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.standard_normal((b, h, n, d)) * 1.5, dtype) for n in (n_q, n_k, n_k))
  cotangent = jnp.asarray(rng.standard_normal((b, h, n_q, d)), jnp.float32)
  # batch 0: trailing padding plus a hole; batch 1: a hole pattern; batch 2: no valid key.
  mask = np.ones((3, n_k), bool)[:b]
  mask[0, n_k - 5:] = False
  mask[0, 2] = False
  if b > 1:
    mask[1, ::3] = False
  if b > 2:
    mask[2] = False
  return q, k, v, jnp.asarray(mask), cotangent


def _value_and_grads(fn, q, k, v, cotangent):
  """fn(q, k, v) and the gradients of sum(fn * cotangent) w.r.t. q, k, v."""
  def loss(q, k, v):
    out = fn(q, k, v)
    return jnp.sum(out.astype(jnp.float32) * cotangent), out
  (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
  return out, grads


def _assert_matches_dense(fn, q, k, v, mask, cotangent, causal, atol=1e-5):
  out, grads = _value_and_grads(fn, q, k, v, cotangent)
  ref, ref_grads = _value_and_grads(lambda q, k, v: dense_attention(q, k, v, mask, causal=causal),
                                    q, k, v, cotangent)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=atol, rtol=atol)
  for name, g, r in zip("qkv", grads, ref_grads):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=atol, rtol=atol, err_msg=f"d{name}")


@pytest.mark.parametrize("causal", [False, True])
def test_flash_equals_dense_values_and_gradients(causal):
  # 37 queries/keys in blocks of 8 x 16: five query blocks and three key blocks, both padded.
  q, k, v, mask, cotangent = _inputs(3, 2, 37, 37, 8)
  fn = lambda q, k, v: flash.flash_attention(q, k, v, mask, causal=causal, block_q=8, block_k=16)
  _assert_matches_dense(fn, q, k, v, mask, cotangent, causal)
  out = fn(q, k, v)
  assert float(jnp.max(jnp.abs(out[2]))) == 0.0  # no valid key -> zeros, as the reference


def test_flash_cross_attention_and_no_mask():
  # Different query and key lengths (e.g. Linformer's projected keys), no mask, one key block.
  q, k, v, _, cotangent = _inputs(2, 2, 21, 12, 8, seed=1)
  fn = lambda q, k, v: flash.flash_attention(q, k, v, block_q=8)
  out, grads = _value_and_grads(fn, q, k, v, cotangent)
  ref, ref_grads = _value_and_grads(lambda q, k, v: dense_attention(q, k, v), q, k, v, cotangent)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=1e-5)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=1e-5, rtol=1e-5)


def test_flash_bfloat16_inputs():
  q, k, v, mask, cotangent = _inputs(2, 2, 24, 24, 16, seed=2, dtype=jnp.bfloat16)
  fn = lambda q, k, v: flash.flash_attention(q, k, v, mask, causal=True, block_q=8, block_k=8)
  out, grads = _value_and_grads(fn, q, k, v, cotangent)
  assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
  f32 = [t.astype(jnp.float32) for t in (q, k, v)]
  ref, ref_grads = _value_and_grads(lambda q, k, v: dense_attention(q, k, v, mask, causal=True),
                                    *f32, cotangent)
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), atol=3e-2)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(r), atol=6e-2)


def test_flash_memory_is_linear_in_length():
  # XLA's estimate of the temporaries of forward + backward: the dense version holds [N, N]
  # scores per head (and more for the backward); the blockwise one O(N * Dh) plus a tile.
  n, h, d = 2048, 2, 16
  x = jax.ShapeDtypeStruct((1, h, n, d), jnp.float32)

  def temp_bytes(attend):
    grad = jax.jit(jax.grad(lambda q, k, v: attend(q, k, v).sum(), argnums=(0, 1, 2)))
    return grad.lower(x, x, x).compile().memory_analysis().temp_size_in_bytes

  scores_bytes = h * n * n * 4
  dense = temp_bytes(lambda q, k, v: dense_attention(q, k, v))
  blockwise = temp_bytes(lambda q, k, v: flash.flash_attention(q, k, v, block_q=128, block_k=128))
  assert dense >= scores_bytes
  assert blockwise < scores_bytes / 8, (blockwise, scores_bytes)


def test_default_block_sizes():
  assert flash.default_block_sizes(100, 60, 8, platform="cpu") == (100, 60, 8)
  for n, bh in [(513, 128), (4096, 8), (16384, 8), (4096, 256), (4001, 6), (1025, 64)]:
    for platform in ("cpu", "gpu"):
      bq, bk, group = flash.default_block_sizes(n, n, bh, platform=platform)
      assert bh % group == 0
      assert group * bq * bk <= flash._MAX_TILE_ELEMENTS[platform] or group == 1
      assert min(bq, bk) > flash._MIN_BLOCK[platform] // 2  # evening out at most halves a block
      # Evened-out blocks: the padded length is within one vector width per block of n.
      blocks = -(-n // bq)
      assert blocks * bq - n < blocks * flash._BLOCK_MULTIPLE, (n, bq)
  # The ListOps shape (512 tokens and a CLS token, 32 x 4 heads) on the CPU: one block of 513
  # (no padding, no inner loop), two (batch, head) pairs per loop step.
  assert flash.default_block_sizes(513, 513, 128, platform="cpu") == (513, 513, 2)
  # A long sequence: the largest blocks whose single-pair tile fits, one pair per step.
  assert flash.default_block_sizes(4096, 4096, 8, platform="cpu") == (1024, 1024, 1)


@pytest.mark.parametrize("group,causal", [(1, False), (2, True), (3, False)])
def test_flash_grouped_pairs_equal_dense(group, causal):
  # Six (batch, head) pairs in steps of `group`; the mask must follow each pair's batch.
  q, k, v, mask, cotangent = _inputs(3, 2, 21, 21, 8, seed=5)
  fn = lambda q, k, v: flash.flash_attention(q, k, v, mask, causal=causal, block_q=8, block_k=8,
                                             group=group)
  _assert_matches_dense(fn, q, k, v, mask, cotangent, causal=causal)
  with pytest.raises(ValueError, match="divide"):
    flash.flash_attention(q, k, v, mask, group=4)


def test_pairs_per_step_follows_the_blocks():
  # Blocks given by the caller get a group sized for them, not for the default blocks.
  budget = flash._MAX_TILE_ELEMENTS["cpu"]
  assert flash.pairs_per_step(128, 512, 512, platform="cpu") == budget // (512 * 512)
  assert flash.pairs_per_step(128, 128, 128, platform="cpu") == 64
  assert flash.pairs_per_step(6, 4096, 4096, platform="cpu") == 1
  assert flash.pairs_per_step(12, 512, 512, platform="cpu") == 4  # 4 of the 12 pairs fit
  assert flash.pairs_per_step(12, 1024, 1024, platform="cpu") == 1


@pytest.mark.parametrize("implementation", ["blockwise", "xla", "dense"])
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_implementations_equal_dense(implementation, causal):
  q, k, v, mask, cotangent = _inputs(3, 2, 20, 20, 8, seed=3)
  fn = lambda q, k, v: softmax_attention(q, k, v, mask, causal=causal, implementation=implementation)
  _assert_matches_dense(fn, q, k, v, mask, cotangent, causal)


def test_choose_implementation_on_cpu():
  small = jax.ShapeDtypeStruct((1, 8, 64, 64), jnp.float32)
  large = jax.ShapeDtypeStruct((1, 8, 4096, 64), jnp.float32)
  assert softmax.choose_implementation(small, small, small) == "xla"
  assert softmax.choose_implementation(large, large, large, jnp.ones((1, 4096), bool)) == "blockwise"


def test_bad_options_raise_value_error():
  q, k, v, mask, _ = _inputs(1, 1, 8, 8, 4)
  with pytest.raises(ValueError, match="choose one of"):
    softmax_attention(q, k, v, mask, implementation="fast")
  with pytest.raises(ValueError, match="cudnn"):
    softmax_attention(q, k, v, mask, implementation="cudnn")  # no NVIDIA GPU in the tests
  with pytest.raises(ValueError, match="mask"):
    flash.flash_attention(q, k, v, mask[:, :5])
  with pytest.raises(ValueError, match="implementation"):
    build("softmax", dim=8, num_heads=2, rngs=nnx.Rngs(0), implementation="fast")


def test_softmax_mixer_implementation_option():
  x = jnp.asarray(np.random.default_rng(4).standard_normal((2, 19, 16)), jnp.float32)
  mask = jnp.asarray(np.arange(19)[None, :] < np.array([[19], [11]]))
  outs = [build("softmax", dim=16, num_heads=2, rngs=nnx.Rngs(0), causal=True,
                implementation=impl)(x, mask, deterministic=True) for impl in ("blockwise", "dense")]
  np.testing.assert_allclose(np.asarray(outs[0]), np.asarray(outs[1]), atol=1e-5, rtol=1e-5)
