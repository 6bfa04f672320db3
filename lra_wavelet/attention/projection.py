"""Shared query/key/value projection for every mixer that attends.

``ProjectedAttention`` owns the input projections to ``[B, H, N, Dh]`` and the output
projection back to ``[B, N, D]``; a subclass implements only ``attend(q, k, v, mask,
deterministic)``, the functional core on ``[B, H, N, Dh]`` that tests can also call
without parameters. This follows the usual multi-head attention layout (Vaswani et al. 2017).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet.dropout import Dropout


def split_heads(x: jax.Array, num_heads: int) -> jax.Array:
  """[B, N, H*Dh] -> [B, H, N, Dh]."""
  b, n, d = x.shape
  return x.reshape(b, n, num_heads, d // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x: jax.Array) -> jax.Array:
  """[B, H, N, Dh] -> [B, N, H*Dh]."""
  b, h, n, dh = x.shape
  return x.transpose(0, 2, 1, 3).reshape(b, n, h * dh)


class ProjectedAttention(nnx.Module):
  """Multi-head attention shell: x -> (q, k, v) -> attend -> output projection.

  Args:
    dim: model width D.
    num_heads: H; ``qkv_dim`` (default D) must be divisible by it.
    qkv_dim: total width of q/k/v (the LRA configs' ``qkv_dim``), Dh = qkv_dim / H.
    dropout: dropout rate on the attention output (before the output projection).
    use_bias: bias in the projections.
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, use_bias: bool = True):
    qkv_dim = qkv_dim or dim
    if qkv_dim % num_heads:
      raise ValueError(f"qkv_dim={qkv_dim} is not divisible by num_heads={num_heads}")
    self.num_heads = num_heads
    self.head_dim = qkv_dim // num_heads
    self.query = nnx.Linear(dim, qkv_dim, use_bias=use_bias, rngs=rngs)
    self.key = nnx.Linear(dim, qkv_dim, use_bias=use_bias, rngs=rngs)
    self.value = nnx.Linear(dim, qkv_dim, use_bias=use_bias, rngs=rngs)
    self.out = nnx.Linear(qkv_dim, dim, use_bias=use_bias, rngs=rngs)
    self.dropout = Dropout(dropout, rngs=rngs)

  def project(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """x: [B, N, D] -> q, k, v each [B, H, N, Dh]."""
    return tuple(split_heads(proj(x), self.num_heads) for proj in (self.query, self.key, self.value))

  def attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
             deterministic: bool) -> jax.Array:
    """q, k, v: [B, H, N, Dh]; mask: bool[B, N] -> [B, H, N, Dh]."""
    raise NotImplementedError

  def __call__(self, x: jax.Array, mask: jax.Array, *, deterministic: bool = True) -> jax.Array:
    q, k, v = self.project(x)
    y = self.attend(q, k, v, mask, deterministic=deterministic)
    y = self.dropout(merge_heads(y), deterministic=deterministic)
    return self.out(y)
