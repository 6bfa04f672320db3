"""Exact softmax attention (Vaswani et al. 2017), the baseline of every table.

``dense_attention`` is the plain reference (materialises the [N, N] scores) that tests of
every approximate mixer compare with; ``softmax_attention`` is what the ``softmax`` mixer
runs (``jax.nn.dot_product_attention``; faster implementations are picked in flash.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet.attention import register
from lra_wavelet.attention.projection import ProjectedAttention


def dense_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                    *, causal: bool = False) -> jax.Array:
  """Reference exact attention. q, k, v: [B, H, N, Dh]; mask: bool[B, N] (True = token).

  Queries at padded positions still get a finite output (attention over valid keys); a row
  with no valid key returns zeros.
  """
  scale = q.shape[-1] ** -0.5
  scores = jnp.einsum("bhqd,bhkd->bhqk", q, k).astype(jnp.float32) * scale
  n_q, n_k = q.shape[2], k.shape[2]
  allowed = jnp.ones((1, 1, n_q, n_k), bool)
  if mask is not None:
    allowed = allowed & mask[:, None, None, :].astype(bool)
  if causal:
    allowed = allowed & jnp.tril(jnp.ones((n_q, n_k), bool))[None, None]
  scores = jnp.where(allowed, scores, -jnp.inf)
  m = jnp.max(scores, axis=-1, keepdims=True)
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  p = jnp.where(allowed, jnp.exp(scores - m), 0.0)
  denom = jnp.sum(p, axis=-1, keepdims=True)
  out = jnp.einsum("bhqk,bhkd->bhqd", p / jnp.where(denom > 0, denom, 1.0), v.astype(jnp.float32))
  return out.astype(q.dtype)


def softmax_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                      *, causal: bool = False) -> jax.Array:
  """Exact attention through ``jax.nn.dot_product_attention`` (XLA implementation).

  q, k, v: [B, H, N, Dh]; mask: bool[B, N]. Same semantics as ``dense_attention``.
  """
  # jax.nn.dot_product_attention takes [B, N, H, Dh].
  qt, kt, vt = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
  bias_mask = None
  if mask is not None:
    bias_mask = mask[:, None, None, :].astype(bool)
  out = jax.nn.dot_product_attention(qt, kt, vt, mask=bias_mask, is_causal=causal)
  if mask is not None:
    # Rows with no valid key: jax returns an average of v; make them zero like the reference.
    any_valid = jnp.any(mask, axis=-1)[:, None, None, None]
    out = jnp.where(any_valid, out, 0.0)
  return out.transpose(0, 2, 1, 3)


@register("softmax")
class SoftmaxAttention(ProjectedAttention):
  """Exact multi-head softmax attention with padding mask (and optional causal mask)."""

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, causal: bool = False):
    super().__init__(dim=dim, num_heads=num_heads, rngs=rngs, qkv_dim=qkv_dim, dropout=dropout)
    self.causal = causal

  def attend(self, q, k, v, mask, *, deterministic):
    return softmax_attention(q, k, v, mask, causal=self.causal)
