"""Blockwise exact softmax attention whose memory grows linearly with sequence length.

The scores ``q k^T`` are never materialised whole. The forward pass walks over blocks of
queries and, inside each, over blocks of keys, keeping a running row maximum, row sum and
weighted value sum (the online softmax of Milakov & Gimelshein 2018, used for memory-efficient
attention by Rabe & Staats 2021). It saves only the output and the per-query logsumexp; the
backward pass recomputes each block of probabilities from them (FlashAttention, Dao et al.
2022, and its work partitioning in FlashAttention-2, Dao 2023). Activation memory is
O(N * Dh) plus one ``[group, block_q, block_k]`` score tile, instead of O(N^2).

On the CPU this is also the fastest exact attention beyond a few hundred tokens: each score
tile stays within a few MB of cache, and short sequences are one block, so their loops
vanish and one dot covers several (batch, head) pairs. ``default_block_sizes`` holds the
per-platform tile plan (block shapes, and how many (batch, head) pairs one loop step takes),
measured with ``lra-wavelet bench``.

``flash_attention`` has the semantics of ``softmax.dense_attention``: ``mask`` marks valid
keys, queries at padded positions still attend over the valid keys, a query with no valid
key gets zeros, and the optional causal mask lets query i see keys j <= i.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class TilePlan(NamedTuple):
  """How the attention is cut into tiles: queries and keys per block, and how many of the
  B * H (batch, head) pairs one loop step covers (``group`` divides B * H)."""
  block_q: int
  block_k: int
  group: int


# Largest score tile one loop step computes, in elements ([group, block_q, block_k]). On the
# CPU a tile of this size (4 MB in float32) stays in the shared last-level cache for the
# elementwise passes between its dots, and ran faster than 8 MB tiles (measured below); on
# accelerators it bounds the per-step workspace.
_MAX_TILE_ELEMENTS = {"cpu": 1024 * 1024, "gpu": 16 * 1024 * 1024, "tpu": 16 * 1024 * 1024}
# Largest (block_q, block_k) per platform, and the smallest block the tile bound may shrink
# them to. Blocks are evened out over the sequence (``_even_block``) so that padding stays
# small; then each loop step takes as many (batch, head) pairs as the tile bound allows.
# CPU, measured on a 2-core AMD EPYC (Zen 4, AVX-512, 1 MB L2 per core), forward + backward
# of the kernel alone, the plans alternating in one process (best of 9): ListOps small
# (513 tokens, 32 x 4 heads of 32) 0.36 s with the former plan (two blocks of 264, 16 pairs
# per step, 4.5 MB tiles) and 0.19 s with this one (one block of 513, 2 pairs); N=4096, 8
# heads of 64: 0.98 s with 512 x 512 over all 8 pairs (8 MB tiles), 0.83 s with 1024 x 1024,
# one pair per step. Halving the blocks below 512 costs more than it saves (256 x 256 over
# 8 pairs: 1.71 s at N=4096).
_PREFERRED_BLOCKS = {"cpu": (1024, 1024), "gpu": (1024, 1024), "tpu": (1024, 1024)}
_MIN_BLOCK = {"cpu": 512, "gpu": 128, "tpu": 128}
_BLOCK_MULTIPLE = 8  # block lengths are multiples of this (vector width), unless one block


def _platform(platform: str | None = None) -> str:
  """"cpu", "gpu" or "tpu": ``platform`` if given, else the default JAX backend (unknown
  platforms count as CPU)."""
  backend = platform or jax.default_backend()
  if backend in ("gpu", "cuda", "rocm"):
    return "gpu"
  return backend if backend in _PREFERRED_BLOCKS else "cpu"


def _even_block(n: int, largest: int) -> int:
  """The block for a length-``n`` axis cut into as few blocks of at most ``largest`` as
  possible, all of about the same length (a multiple of ``_BLOCK_MULTIPLE``): 513 tokens in
  blocks of up to 512 become two blocks of 264 (528 padded) instead of two of 512 (1024)."""
  if n <= largest:
    return n
  blocks = -(-n // largest)
  block = -(-n // blocks)
  return min(largest, -(-block // _BLOCK_MULTIPLE) * _BLOCK_MULTIPLE)


def default_block_sizes(n_q: int, n_k: int, batch_heads: int = 8, *,
                        platform: str | None = None) -> TilePlan:
  """The tile plan for ``n_q`` queries and ``n_k`` keys with ``batch_heads`` = B * H.

  The blocks are the platform's preferred ones evened out over the lengths (a length that
  fits one block is one block); while one (batch, head) pair's score tile exceeds the
  platform's budget, the larger block's cap is halved, down to the platform's smallest
  block. Then each loop step takes as many (batch, head) pairs as fit the budget (the
  largest divisor of ``batch_heads`` that does).
  """
  platform = _platform(platform)
  cap_q, cap_k = _PREFERRED_BLOCKS[platform]
  budget, smallest = _MAX_TILE_ELEMENTS[platform], _MIN_BLOCK[platform]
  while True:
    block_q, block_k = _even_block(max(n_q, 1), cap_q), _even_block(max(n_k, 1), cap_k)
    if block_q * block_k <= budget:
      break
    if block_k >= block_q and cap_k >= 2 * smallest:
      cap_k //= 2
    elif cap_q >= 2 * smallest:
      cap_q //= 2
    elif cap_k >= 2 * smallest:
      cap_k //= 2
    else:
      break
  group = pairs_per_step(batch_heads, block_q, block_k, platform=platform)
  return TilePlan(block_q, block_k, group)


def pairs_per_step(batch_heads: int, block_q: int, block_k: int, *,
                   platform: str | None = None) -> int:
  """How many of ``batch_heads`` (batch, head) pairs one loop step takes with these blocks:
  the largest divisor of ``batch_heads`` whose score tile fits the platform's budget
  (at least 1)."""
  fits = max(1, _MAX_TILE_ELEMENTS[_platform(platform)] // (block_q * block_k))
  return max(g for g in range(1, min(fits, batch_heads) + 1) if batch_heads % g == 0)


def _causal_blocks(i: jax.Array, block_q: int, block_k: int, num_k_blocks: int) -> jax.Array:
  """Number of key blocks that query block ``i`` can see under the causal mask."""
  last_query = (i + 1) * block_q - 1
  return jnp.minimum(num_k_blocks, last_query // block_k + 1)


def _allowed(key_valid_j: jax.Array, i: jax.Array, j: jax.Array, block_q: int,
             block_k: int) -> jax.Array:
  """bool [B, 1, block_q, block_k]: which (query, key) pairs of tile (i, j) the key mask and the
  causal mask keep."""
  rows = i * block_q + lax.broadcasted_iota(jnp.int32, (block_q, block_k), 0)
  cols = j * block_k + lax.broadcasted_iota(jnp.int32, (block_q, block_k), 1)
  return key_valid_j[:, None, None, :] & (cols <= rows)[None, None]


def _key_bias(key_valid_j: jax.Array) -> jax.Array:
  """float32 [B, block_k]: 0 at valid keys, -inf at masked ones.

  Without the causal mask, adding this to the scores masks them in the elementwise pass that
  follows the dot, where a select would be a pass of its own (12% of the kernel's time at the
  ListOps small shape). With it, one select applies both masks.
  """
  return jnp.where(key_valid_j, 0.0, -jnp.inf).astype(jnp.float32)


def _scores(q_i, k_j, valid_j, i, j, block_q, block_k, causal):
  """[B, H, bq, Dh] x [B, H, bk, Dh] -> float32 [B, H, bq, bk], -inf where not allowed."""
  s = jnp.einsum("bhqd,bhkd->bhqk", q_i, k_j, preferred_element_type=jnp.float32)
  if causal:
    return jnp.where(_allowed(valid_j, i, j, block_q, block_k), s, -jnp.inf)
  return s + _key_bias(valid_j)[:, None, None, :]


def _query_blocks(x: jax.Array, block_q: int) -> jax.Array:
  """[B, H, Nq, ...] -> [Nq / block_q, B, H, block_q, ...] (the scan axis first)."""
  b, h, n = x.shape[:3]
  x = x.reshape(b, h, n // block_q, block_q, *x.shape[3:])
  return jnp.moveaxis(x, 2, 0)


def _unblock(x: jax.Array) -> jax.Array:
  """Inverse of ``_query_blocks``."""
  nb, b, h, bq = x.shape[:4]
  return jnp.moveaxis(x, 0, 2).reshape(b, h, nb * bq, *x.shape[4:])


def _forward(q, k, v, key_valid, causal, block_q, block_k):
  """Output [B, H, Nq, Dv] (dtype of v) and logsumexp [B, H, Nq] (float32) of pre-scaled q."""
  num_k_blocks = k.shape[2] // block_k

  def query_block(_, xs):
    i, q_i = xs
    b, h = q_i.shape[:2]
    m0 = jnp.full((b, h, block_q), -jnp.inf, jnp.float32)
    l0 = jnp.zeros((b, h, block_q), jnp.float32)
    acc0 = jnp.zeros((b, h, block_q, v.shape[-1]), jnp.float32)

    def key_block(j, carry):
      m, l, acc = carry
      k_j = lax.dynamic_slice_in_dim(k, j * block_k, block_k, axis=2)
      v_j = lax.dynamic_slice_in_dim(v, j * block_k, block_k, axis=2)
      valid_j = lax.dynamic_slice_in_dim(key_valid, j * block_k, block_k, axis=1)
      s = _scores(q_i, k_j, valid_j, i, j, block_q, block_k, causal)
      m_new = jnp.maximum(m, jnp.max(s, axis=-1))
      # A row that has seen no allowed key keeps m = -inf; subtract 0 there instead so that
      # exp gives 0 rather than NaN.
      m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
      p = jnp.exp(s - m_safe[..., None])
      correction = jnp.exp(m - m_safe)
      l = l * correction + jnp.sum(p, axis=-1)
      pv = jnp.einsum("bhqk,bhkd->bhqd", p.astype(v.dtype), v_j, preferred_element_type=jnp.float32)
      return m_new, l, acc * correction[..., None] + pv

    stop = _causal_blocks(i, block_q, block_k, num_k_blocks) if causal else num_k_blocks
    m, l, acc = lax.fori_loop(0, stop, key_block, (m0, l0, acc0))
    nonempty = l > 0
    out = acc / jnp.where(nonempty, l, 1.0)[..., None]
    lse = jnp.where(nonempty, m + jnp.log(jnp.where(nonempty, l, 1.0)), 0.0)
    return None, (out.astype(v.dtype), lse)

  num_q_blocks = q.shape[2] // block_q
  _, (out, lse) = lax.scan(query_block, None, (jnp.arange(num_q_blocks), _query_blocks(q, block_q)))
  return _unblock(out), _unblock(lse)


def _backward(q, k, v, key_valid, out, lse, d_out, causal, block_q, block_k):
  """Gradients of sum(out * d_out) w.r.t. pre-scaled q, k and v, one tile at a time.

  Tiles are computed key-major ([B, H, block_k, block_q]) so that all five products are
  plain or right-transposed matrix products, the forms that run fastest on the CPU; dq is
  accumulated transposed ([B, H, Dh, block_q]) against a transposed copy of k for the same
  reason.
  """
  num_k_blocks = k.shape[2] // block_k
  # delta_i = sum_j P_ij dP_ij = d_out_i . out_i (the softmax Jacobian's diagonal term).
  delta = jnp.einsum("bhqd,bhqd->bhq", d_out.astype(jnp.float32), out.astype(jnp.float32))
  k_t = jnp.swapaxes(k, 2, 3)  # [B, H, Dh, Nk]

  def query_block(carry, xs):
    dk, dv = carry
    i, q_i, do_i, lse_i, delta_i = xs

    def key_block(j, inner):
      dq_t, dk, dv = inner
      k_j = lax.dynamic_slice_in_dim(k, j * block_k, block_k, axis=2)
      k_t_j = lax.dynamic_slice_in_dim(k_t, j * block_k, block_k, axis=3)
      v_j = lax.dynamic_slice_in_dim(v, j * block_k, block_k, axis=2)
      valid_j = lax.dynamic_slice_in_dim(key_valid, j * block_k, block_k, axis=1)
      s_t = jnp.einsum("bhkd,bhqd->bhkq", k_j, q_i, preferred_element_type=jnp.float32)
      if causal:
        allowed_t = jnp.swapaxes(_allowed(valid_j, i, j, block_q, block_k), 2, 3)
        p_t = jnp.where(allowed_t, jnp.exp(s_t - lse_i[:, :, None, :]), 0.0)
      else:  # masked keys score -inf, so exp gives them probability 0
        p_t = jnp.exp(s_t + _key_bias(valid_j)[:, None, :, None] - lse_i[:, :, None, :])
      dv_j = jnp.einsum("bhkq,bhqd->bhkd", p_t.astype(do_i.dtype), do_i,
                        preferred_element_type=jnp.float32)
      dp_t = jnp.einsum("bhkd,bhqd->bhkq", v_j, do_i, preferred_element_type=jnp.float32)
      ds_t = p_t * (dp_t - delta_i[:, :, None, :])
      dk_j = jnp.einsum("bhkq,bhqd->bhkd", ds_t.astype(q_i.dtype), q_i,
                        preferred_element_type=jnp.float32)
      dq_t = dq_t + jnp.einsum("bhdk,bhkq->bhdq", k_t_j, ds_t.astype(k.dtype),
                               preferred_element_type=jnp.float32)
      dk = lax.dynamic_update_slice_in_dim(
          dk, lax.dynamic_slice_in_dim(dk, j * block_k, block_k, axis=2) + dk_j, j * block_k, axis=2)
      dv = lax.dynamic_update_slice_in_dim(
          dv, lax.dynamic_slice_in_dim(dv, j * block_k, block_k, axis=2) + dv_j, j * block_k, axis=2)
      return dq_t, dk, dv

    dq_t0 = jnp.zeros((*q_i.shape[:2], q_i.shape[3], block_q), jnp.float32)
    stop = _causal_blocks(i, block_q, block_k, num_k_blocks) if causal else num_k_blocks
    dq_t, dk, dv = lax.fori_loop(0, stop, key_block, (dq_t0, dk, dv))
    return (dk, dv), jnp.swapaxes(dq_t, 2, 3)

  num_q_blocks = q.shape[2] // block_q
  zeros_k = jnp.zeros(k.shape, jnp.float32)
  zeros_v = jnp.zeros(v.shape, jnp.float32)
  xs = (jnp.arange(num_q_blocks),) + tuple(_query_blocks(t, block_q) for t in (q, d_out, lse, delta))
  (dk, dv), dq = lax.scan(query_block, (zeros_k, zeros_v), xs)
  return _unblock(dq).astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _flash(q, k, v, key_valid, causal, block_q, block_k):
  return _forward(q, k, v, key_valid, causal, block_q, block_k)[0]


def _flash_fwd(q, k, v, key_valid, causal, block_q, block_k):
  out, lse = _forward(q, k, v, key_valid, causal, block_q, block_k)
  return out, (q, k, v, key_valid, out, lse)


def _flash_bwd(causal, block_q, block_k, residuals, d_out):
  q, k, v, key_valid, out, lse = residuals
  dq, dk, dv = _backward(q, k, v, key_valid, out, lse, d_out, causal, block_q, block_k)
  return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def _pad_to(x: jax.Array, n: int, axis: int, value=0) -> jax.Array:
  if x.shape[axis] == n:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, n - x.shape[axis])
  return jnp.pad(x, widths, constant_values=value)


def _over_groups(q, k, v, key_valid, group: int, attend):
  """``attend`` on ``group`` (batch, head) pairs at a time, one after another (``lax.map``).

  q, k, v: [B, H, N, D]; key_valid: bool [B, Nk]. Each step sees the pairs as a batch of
  ``group`` with one head, so its score tile is ``[group, 1, block_q, block_k]``.
  """
  b, h = q.shape[:2]
  if group >= b * h:
    return attend(q, k, v, key_valid)
  steps = b * h // group

  def split(t):  # [B, H, N, D] -> [steps, group, 1, N, D]
    return t.reshape(steps, group, 1, *t.shape[2:])

  valid = jnp.repeat(key_valid, h, axis=0).reshape(steps, group, key_valid.shape[1])
  out = lax.map(lambda xs: attend(*xs), (split(q), split(k), split(v), valid))
  return out.reshape(b, h, *out.shape[3:])


def flash_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None, *,
                    causal: bool = False, block_q: int | None = None,
                    block_k: int | None = None, group: int | None = None) -> jax.Array:
  """Exact softmax attention in blocks, with a recomputing backward pass.

  Args:
    q: [B, H, Nq, Dh] queries.
    k: [B, H, Nk, Dh] keys.
    v: [B, H, Nk, Dv] values.
    mask: bool [B, Nk], True at valid keys (None: all valid).
    causal: query i sees keys j <= i only.
    block_q, block_k: tile shape; None picks ``default_block_sizes`` for this platform.
      Lengths that are not a multiple of the block are padded (and the padding masked).
    group: (batch, head) pairs per loop step, a divisor of B * H; None picks as many as keep
      the score tile of these blocks within the platform's budget (``pairs_per_step``).

  Returns:
    [B, H, Nq, Dv] in the dtype of ``q``. Scores, softmax and accumulation run in float32
    for any input dtype.
  """
  if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
    raise ValueError(f"q, k, v must be [B, H, N, Dh]; got shapes {q.shape}, {k.shape}, {v.shape}")
  b, h, n_q, d = q.shape
  n_k = k.shape[2]
  if k.shape[:2] != (b, h) or k.shape[3] != d or v.shape[:3] != k.shape[:3]:
    raise ValueError(f"k must be [B, H, Nk, Dh] and v [B, H, Nk, Dv] matching q {q.shape}; "
                     f"got k {k.shape}, v {v.shape}")
  if mask is not None and mask.shape != (b, n_k):
    raise ValueError(f"mask must be bool [B, Nk] = {(b, n_k)}; got {mask.shape}")
  plan = default_block_sizes(n_q, n_k, b * h)
  block_q = min(block_q or plan.block_q, n_q)
  block_k = min(block_k or plan.block_k, n_k)
  group = group or pairs_per_step(b * h, block_q, block_k)
  if block_q < 1 or block_k < 1:
    raise ValueError(f"block sizes must be positive; got block_q={block_q}, block_k={block_k}")
  if group < 1 or (b * h) % group:
    raise ValueError(f"group must divide B * H = {b * h}; got {group}")
  padded_q = -(-n_q // block_q) * block_q
  padded_k = -(-n_k // block_k) * block_k
  key_valid = jnp.ones((b, n_k), bool) if mask is None else mask.astype(bool)
  key_valid = _pad_to(key_valid, padded_k, axis=1, value=False)
  dtype = jnp.result_type(q.dtype, k.dtype, v.dtype)
  scale = jnp.asarray(d ** -0.5, dtype)
  attend = lambda q, k, v, valid: _flash(q, k, v, valid, causal, block_q, block_k)
  out = _over_groups(_pad_to((q * scale).astype(dtype), padded_q, axis=2),
                     _pad_to(k.astype(dtype), padded_k, axis=2),
                     _pad_to(v.astype(dtype), padded_k, axis=2), key_valid, group, attend)
  return out[:, :, :n_q].astype(q.dtype)
