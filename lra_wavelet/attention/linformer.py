"""Linformer attention (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity"),
one of the backbones the WavSpA paper wraps.

Keys and values are compressed along the sequence axis by learned projections before a
softmax attention: with E, F [L, k],

    K' = E^T K [k, Dh],   V' = F^T V [k, Dh],   out = softmax(Q K'^T / sqrt(Dh)) V'

which costs O(N k) instead of O(N^2). The projections are sized for a fixed sequence length
L = ``max_len``: an input of N <= L positions is treated as zero-padded up to L (computed by
using only the first N rows of E and F, which gives the same result), and N > L is an error.
Keys and values at padded positions are zeroed before the projection, so padding content never
reaches the output; the k compressed slots are all attended (there is no mask after the
projection). E and F are shared by the heads; ``share_kv`` uses one matrix for both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet.attention import register
from lra_wavelet.attention.projection import ProjectedAttention
from lra_wavelet.attention.softmax import softmax_attention


def linformer_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
                        proj_k: jax.Array, proj_v: jax.Array) -> jax.Array:
  """Softmax attention over sequence-compressed keys and values.

  Args:
    q, k, v: [B, H, N, Dh].
    mask: bool[B, N] (True = real token) or None; padded keys/values are zeroed first.
    proj_k, proj_v: E and F, [L, k] with L >= N (the inputs count as zero-padded to L).

  Returns:
    [B, H, N, Dh] in q's dtype (projections and attention in float32).
  """
  n, max_len = k.shape[2], proj_k.shape[0]
  if n > max_len:
    raise ValueError(f"the linformer projections are sized for max_len={max_len} positions but "
                     f"the input has {n}; build the mixer with max_len >= {n}")
  dtype = q.dtype
  q, k, v = (t.astype(jnp.float32) for t in (q, k, v))
  if mask is not None:
    valid = mask.astype(bool)[:, None, :, None]
    k = jnp.where(valid, k, 0.0)
    v = jnp.where(valid, v, 0.0)
  k = jnp.einsum("bhnd,nc->bhcd", k, proj_k[:n].astype(jnp.float32))
  v = jnp.einsum("bhnd,nc->bhcd", v, proj_v[:n].astype(jnp.float32))
  return softmax_attention(q, k, v).astype(dtype)


@register("linformer")
class LinformerAttention(ProjectedAttention):
  """Linformer mixer.

  Args:
    dim, num_heads, rngs, qkv_dim, dropout: as in ``ProjectedAttention``.
    k: the compressed length (default 128, the WavSpA/LRA setting).
    max_len: the length L the projections are sized for (required): the longest sequence the
      mixer will see, i.e. the task length plus one when a CLS token is prepended. Shorter
      inputs count as zero-padded to L; longer ones raise ValueError.
    share_kv: use one projection for keys and values (E = F).
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, k: int = 128, max_len: int | None = None,
               share_kv: bool = False):
    if max_len is None:
      raise ValueError("the linformer mixer needs max_len, the longest sequence it will see "
                       "(task length, plus 1 with a CLS token); pass it in the mixer options")
    for name, value in (("k", k), ("max_len", max_len)):
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"linformer option {name} must be a positive integer, got {value!r}")
    super().__init__(dim=dim, num_heads=num_heads, rngs=rngs, qkv_dim=qkv_dim, dropout=dropout)
    init = nnx.initializers.lecun_normal()  # fan-in = max_len, like a dense layer over the sequence
    self.proj_k = nnx.Param(init(rngs.params(), (max_len, k), jnp.float32))
    self.share_kv = share_kv
    self.proj_v = nnx.data(None) if share_kv else nnx.Param(
        init(rngs.params(), (max_len, k), jnp.float32))

  def attend(self, q, k, v, mask, *, deterministic):
    proj_k = self.proj_k[...]
    proj_v = proj_k if self.share_kv else self.proj_v[...]
    return linformer_attention(q, k, v, mask, proj_k, proj_v)
