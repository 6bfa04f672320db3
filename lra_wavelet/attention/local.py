"""Sliding-window attention with global tokens (Longformer, Beltagy et al. 2020), the
``longformer`` backbone of the WavSpA tables.

Query i attends key j when

    |i - j| <= window // 2        (the band; j <= i as well when causal)
    or i < num_global or j < num_global   (global tokens: the first positions, e.g. CLS,
                                           attend everywhere and are attended by everyone)

and key j is a real token; the weights are a softmax over exactly these keys. Causal keeps
j <= i in every case, global tokens included.

Block-wise evaluation, memory O(N * window) instead of O(N^2): the sequence is cut into blocks
of b = min(window // 2, N) positions; the band of every query in block c lies inside the
blocks c-1, c, c+1 (c-1, c when causal), so each block of queries scores against those
3b keys plus the num_global global keys, in one softmax. Global keys are left out of the band
part so that no key is counted twice. The num_global global queries take a dense row over all
N keys (O(num_global * N)) that replaces their band row.

When the band covers the whole sequence (window // 2 >= N - 1, e.g. LRA's window of 512 on a
short tiny-scale run) every query sees every key: that is exact attention, and it runs on the
shared exact-attention core (``softmax_attention``) instead of the block-wise band.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet.attention import register
from lra_wavelet.attention.projection import ProjectedAttention
from lra_wavelet.attention.softmax import softmax_attention


def _masked_softmax(scores: jax.Array, allowed: jax.Array) -> jax.Array:
  """Softmax over the last axis restricted to ``allowed``; a row with nothing allowed is 0."""
  scores = jnp.where(allowed, scores, -jnp.inf)
  top = jnp.max(scores, axis=-1, keepdims=True)
  top = jnp.where(jnp.isfinite(top), top, 0.0)
  p = jnp.where(allowed, jnp.exp(scores - top), 0.0)
  total = jnp.sum(p, axis=-1, keepdims=True)
  return p / jnp.where(total > 0, total, 1.0)


def local_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                    *, window: int, num_global: int = 0, causal: bool = False) -> jax.Array:
  """Band + global-token softmax attention, evaluated block-wise (module docstring).

  Args:
    q, k, v: [B, H, N, Dh].
    mask: bool[B, N], True at real tokens (None = all real).
    window: total band width; query i sees keys with |i - j| <= window // 2 (>= 2).
    num_global: the first num_global positions are global tokens (clipped to N).
    causal: only keys j <= i.

  Returns:
    [B, H, N, Dh] in q's dtype (scores and softmax in float32).
  """
  if not isinstance(window, int) or window < 2:
    raise ValueError(f"window must be an integer >= 2, got {window!r}")
  if not isinstance(num_global, int) or num_global < 0:
    raise ValueError(f"num_global must be a non-negative integer, got {num_global!r}")
  bsz, h, n, dh = q.shape
  dtype = q.dtype
  half = window // 2
  if half >= n - 1:  # the band holds every key: exact attention
    return softmax_attention(q, k, v, mask, causal=causal)
  glob = min(num_global, n)
  blk = min(half, n)
  num_blocks = -(-n // blk)
  n_pad = num_blocks * blk
  offsets = (-1, 0) if causal else (-1, 0, 1)
  valid = jnp.ones((bsz, n), bool) if mask is None else mask.astype(bool)
  q = q.astype(jnp.float32) * dh ** -0.5
  k, v = k.astype(jnp.float32), v.astype(jnp.float32)

  # Keys/values padded by one block on each side: block c + 1 of the padded array is block c.
  def neighbours(t: jax.Array, axis: int) -> jax.Array:
    """[..., N (at axis), ...] -> [..., num_blocks, len(offsets) * blk, ...]."""
    pads = [(0, 0)] * t.ndim
    pads[axis] = (blk, n_pad - n + blk)
    t = jnp.pad(t, pads)
    t = t.reshape(t.shape[:axis] + (num_blocks + 2, blk) + t.shape[axis + 1:])
    parts = [jax.lax.slice_in_dim(t, 1 + o, 1 + o + num_blocks, axis=axis) for o in offsets]
    return jnp.concatenate(parts, axis=axis + 1)

  k_win, v_win = neighbours(k, 2), neighbours(v, 2)  # [B, H, nb, W, Dh]
  valid_win = neighbours(valid, 1)  # [B, nb, W]
  q_blocks = jnp.pad(q, ((0, 0), (0, 0), (0, n_pad - n), (0, 0))).reshape(
      bsz, h, num_blocks, blk, dh)

  q_pos = jnp.arange(n_pad).reshape(num_blocks, blk)  # [nb, blk]
  k_pos = jnp.concatenate([(jnp.arange(num_blocks)[:, None] + o) * blk + jnp.arange(blk)
                           for o in offsets], axis=1)  # [nb, W]
  rel = k_pos[:, None, :] - q_pos[:, :, None]  # [nb, blk, W]: j - i
  band = (jnp.abs(rel) <= half) & (k_pos[:, None, :] >= glob)
  if causal:
    band = band & (rel <= 0)
  allowed = band[None, None] & valid_win[:, None, :, None, :]  # [B, 1, nb, blk, W]
  scores = jnp.einsum("bhcqd,bhckd->bhcqk", q_blocks, k_win)

  if glob:
    g_allowed = jnp.broadcast_to(valid[:, None, None, None, :glob],
                                 (bsz, 1, num_blocks, blk, glob))
    if causal:
      g_allowed = g_allowed & (jnp.arange(glob) <= q_pos[:, :, None])[None, None]
    g_scores = jnp.einsum("bhcqd,bhgd->bhcqg", q_blocks, k[:, :, :glob])
    p = _masked_softmax(jnp.concatenate([scores, g_scores], -1),
                        jnp.concatenate([allowed, g_allowed], -1))
    w = scores.shape[-1]
    out = (jnp.einsum("bhcqk,bhckd->bhcqd", p[..., :w], v_win)
           + jnp.einsum("bhcqg,bhgd->bhcqd", p[..., w:], v[:, :, :glob]))
  else:
    out = jnp.einsum("bhcqk,bhckd->bhcqd", _masked_softmax(scores, allowed), v_win)
  out = out.reshape(bsz, h, n_pad, dh)[:, :, :n]

  if glob:  # global queries: a dense row over every real key (j <= i when causal)
    rows_allowed = jnp.broadcast_to(valid[:, None, None, :], (bsz, 1, glob, n))
    if causal:
      rows_allowed = rows_allowed & jnp.tril(jnp.ones((glob, n), bool))[None, None]
    rows = _masked_softmax(jnp.einsum("bhgd,bhnd->bhgn", q[:, :, :glob], k), rows_allowed)
    out = jnp.concatenate([jnp.einsum("bhgn,bhnd->bhgd", rows, v), out[:, :, glob:]], axis=2)
  return out.astype(dtype)


@register("local")
class LocalAttention(ProjectedAttention):
  """Longformer-style local attention: sliding window plus global tokens.

  Args:
    dim, num_heads, rngs, qkv_dim, dropout: as in ``ProjectedAttention``.
    window: total window width; each query sees window // 2 keys on each side (default 512,
      the WavSpA Longformer setting).
    num_global: the first positions that attend everywhere and are attended by everyone
      (default 1: the CLS position).
    causal: position t attends to positions <= t only.
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, window: int = 512, num_global: int = 1,
               causal: bool = False):
    if not isinstance(window, int) or window < 2:
      raise ValueError(f"window must be an integer >= 2, got {window!r}")
    if not isinstance(num_global, int) or num_global < 0:
      raise ValueError(f"num_global must be a non-negative integer, got {num_global!r}")
    super().__init__(dim=dim, num_heads=num_heads, rngs=rngs, qkv_dim=qkv_dim, dropout=dropout)
    self.window = window
    self.num_global = num_global
    self.causal = causal

  def attend(self, q, k, v, mask, *, deterministic):
    return local_attention(q, k, v, mask, window=self.window, num_global=self.num_global,
                           causal=self.causal)
