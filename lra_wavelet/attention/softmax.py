"""Exact softmax attention (Vaswani et al. 2017), the baseline of every table.

``dense_attention`` is the plain reference (materialises the [N, N] scores) that tests of
every approximate mixer compare with. ``softmax_attention`` computes the same function with
the fastest implementation available for the platform and shape:

- ``blockwise``: ``flash.flash_attention``, tiles with a recomputing backward pass and memory
  linear in N (FlashAttention, Dao et al. 2022); the fastest exact attention on the CPU
  beyond a few hundred tokens, and the only one that fits at Path-X length.
- ``cudnn``: cuDNN's fused flash-attention kernel on NVIDIA GPUs through
  ``jax.nn.dot_product_attention(implementation="cudnn")`` (bf16/fp16, head dim a multiple
  of 8 up to 128).
- ``pallas``: the Pallas TPU flash-attention kernel shipped with JAX.
- ``xla``: ``jax.nn.dot_product_attention(implementation="xla")``, quadratic memory.
- ``dense``: ``dense_attention`` itself.

``auto`` picks among them by ``choose_implementation``; any name forces one. Every mixer that
attends exactly over a set of keys (WavSpA bands, local windows, MRA's dense blocks) can call
``softmax_attention`` and get the same choice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet.attention import register
from lra_wavelet.attention.flash import flash_attention
from lra_wavelet.attention.projection import ProjectedAttention

IMPLEMENTATIONS = ("auto", "blockwise", "xla", "cudnn", "pallas", "dense")

# On the CPU the blockwise kernel beats XLA's dense attention from this many score entries
# per (batch, head) on (measured with ``lra-wavelet bench``; below it the dense version's
# single fused pass is cheaper than the loop). Accelerators switch to blockwise only when
# the dense [N, N] scores would take more memory than this many entries per (batch, head).
_CPU_BLOCKWISE_FROM = 256 * 256
_ACCELERATOR_BLOCKWISE_FROM = 4096 * 4096


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


def _cudnn_supported(q: jax.Array, k: jax.Array, v: jax.Array, mask, causal: bool) -> str | None:
  """None if cuDNN's fused attention takes these inputs, else the reason it does not."""
  if jax.default_backend() not in ("gpu", "cuda"):
    return f"it needs an NVIDIA GPU and JAX runs on {jax.default_backend()}"
  if q.dtype not in (jnp.bfloat16, jnp.float16):
    return f"it takes bfloat16/float16 inputs, not {q.dtype}"
  if q.shape[-1] % 8 or q.shape[-1] > 128 or v.shape[-1] != q.shape[-1]:
    return f"it needs a head dim that is a multiple of 8 up to 128 (got {q.shape[-1]}, {v.shape[-1]})"
  if causal and mask is not None:
    return "it takes a padding mask only without the causal mask"
  return None


def _pallas_supported(q: jax.Array, k: jax.Array, v: jax.Array) -> str | None:
  """None if the Pallas TPU flash kernel takes these inputs, else the reason it does not."""
  if jax.default_backend() != "tpu":
    return f"it needs a TPU and JAX runs on {jax.default_backend()}"
  if q.shape[2] % 128 or k.shape[2] % 128:
    return f"it needs lengths that are multiples of 128 (got {q.shape[2]}, {k.shape[2]})"
  if v.shape[-1] != q.shape[-1]:
    return "it needs values with the head dim of the queries"
  return None


def choose_implementation(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                          *, causal: bool = False) -> str:
  """The implementation ``auto`` runs for these shapes and dtypes on this platform."""
  if _cudnn_supported(q, k, v, mask, causal) is None:
    return "cudnn"
  if _pallas_supported(q, k, v) is None:
    try:
      from jax.experimental.pallas.ops.tpu import flash_attention as _  # pylint: disable=import-outside-toplevel
      return "pallas"
    except ImportError:
      pass
  scores = q.shape[2] * k.shape[2]
  threshold = _CPU_BLOCKWISE_FROM if jax.default_backend() == "cpu" else _ACCELERATOR_BLOCKWISE_FROM
  return "blockwise" if scores >= threshold else "xla"


def _zero_queries_without_keys(out: jax.Array, mask: jax.Array, causal: bool) -> jax.Array:
  """Zero the rows of out [B, H, Nq, Dv] whose query sees no valid key (mask: bool [B, Nk])."""
  if causal:  # query i sees keys 0..i
    seen = jnp.cumsum(mask, axis=1) > 0
    has_key = seen[:, jnp.minimum(jnp.arange(out.shape[2]), mask.shape[1] - 1)][:, None, :, None]
  else:
    has_key = jnp.any(mask, axis=1)[:, None, None, None]
  return jnp.where(has_key, out, 0.0)


def _jax_attention(q, k, v, mask, causal: bool, implementation: str) -> jax.Array:
  """``jax.nn.dot_product_attention`` with a padding mask given as key sequence lengths.

  Fused kernels take padding only as a count of valid keys at the front. Attention is
  invariant to the order of the keys, so without the causal mask the valid keys are moved to
  the front (stable sort) and any boolean mask is exact. With the causal mask the key order
  matters and the mask is passed as an explicit [B, 1, 1, Nk] mask (``xla`` only).
  """
  qt, kt, vt = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # [B, N, H, Dh]
  if mask is None:
    out = jax.nn.dot_product_attention(qt, kt, vt, is_causal=causal, implementation=implementation)
    return out.transpose(0, 2, 1, 3)
  mask = mask.astype(bool)
  if causal:
    out = jax.nn.dot_product_attention(qt, kt, vt, mask=mask[:, None, None, :], is_causal=True,
                                       implementation=implementation)
  else:
    order = jnp.argsort(~mask, axis=1, stable=True)  # valid keys first, in their order
    kt = jnp.take_along_axis(kt, order[:, :, None, None], axis=1)
    vt = jnp.take_along_axis(vt, order[:, :, None, None], axis=1)
    lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)
    out = jax.nn.dot_product_attention(qt, kt, vt, key_value_seq_lengths=lengths,
                                       implementation=implementation)
  # JAX averages v for a query with no valid key; the reference gives zeros.
  return _zero_queries_without_keys(out.transpose(0, 2, 1, 3), mask, causal).astype(q.dtype)


def _pallas_attention(q, k, v, mask, causal: bool) -> jax.Array:
  """The Pallas TPU flash kernel; padding as segment ids (every query in segment 1)."""
  # pylint: disable-next=import-outside-toplevel
  from jax.experimental.pallas.ops.tpu import flash_attention as pallas_flash
  segment_ids = None
  if mask is not None:
    segment_ids = pallas_flash.SegmentIds(q=jnp.ones(q.shape[:1] + q.shape[2:3], jnp.int32),
                                          kv=mask.astype(jnp.int32))
  out = pallas_flash.flash_attention(q, k, v, segment_ids=segment_ids, causal=causal,
                                     sm_scale=q.shape[-1] ** -0.5)
  if mask is not None:
    out = _zero_queries_without_keys(out, mask, causal)
  return out.astype(q.dtype)


def softmax_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                      *, causal: bool = False, implementation: str = "auto") -> jax.Array:
  """Exact attention with the semantics of ``dense_attention``.

  q: [B, H, Nq, Dh]; k, v: [B, H, Nk, Dh]; mask: bool[B, Nk] (True = valid key).
  ``implementation``: one of ``IMPLEMENTATIONS``; "auto" runs ``choose_implementation``.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"unknown attention implementation {implementation!r}; "
                     f"choose one of {', '.join(IMPLEMENTATIONS)}")
  if implementation == "auto":
    implementation = choose_implementation(q, k, v, mask, causal=causal)
  if implementation == "blockwise":
    return flash_attention(q, k, v, mask, causal=causal)
  if implementation == "dense":
    return dense_attention(q, k, v, mask, causal=causal)
  if implementation == "cudnn":
    reason = _cudnn_supported(q, k, v, mask, causal)
    if reason:
      raise ValueError(f"implementation='cudnn' cannot run here: {reason}; "
                       f"use implementation='auto' or 'blockwise'")
  if implementation == "pallas":
    reason = _pallas_supported(q, k, v)
    if reason:
      raise ValueError(f"implementation='pallas' cannot run here: {reason}; "
                       f"use implementation='auto' or 'blockwise'")
    return _pallas_attention(q, k, v, mask, causal)
  return _jax_attention(q, k, v, mask, causal, implementation)


@register("softmax")
class SoftmaxAttention(ProjectedAttention):
  """Exact multi-head softmax attention with padding mask (and optional causal mask).

  ``implementation`` selects the kernel (see ``IMPLEMENTATIONS``); the default "auto" picks
  the fastest one that fits the platform, dtype and length.
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, causal: bool = False, implementation: str = "auto"):
    if implementation not in IMPLEMENTATIONS:
      raise ValueError(f"softmax mixer: unknown implementation {implementation!r}; "
                       f"choose one of {', '.join(IMPLEMENTATIONS)}")
    super().__init__(dim=dim, num_heads=num_heads, rngs=rngs, qkv_dim=qkv_dim, dropout=dropout)
    self.causal = causal
    self.implementation = implementation

  def attend(self, q, k, v, mask, *, deterministic):
    return softmax_attention(q, k, v, mask, causal=self.causal, implementation=self.implementation)
