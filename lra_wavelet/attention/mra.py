"""MRA-2 attention: multi-resolution approximation of softmax attention (Zeng et al., ICML 2022).

Multi Resolution Analysis for approximate self-attention (REFERENCES.md §2) splits the
[N, N] attention matrix into T x T blocks (T = ``block_size``, 32 in the paper), looks at all
of them at low resolution (one score per block, from block means) and computes a budget of
them exactly. Per batch element and head, with nb = ceil(N / T) blocks:

1. Low resolution. Masked block means Q^, K^, V^ [nb, Dh] (padding excluded), token counts
   c [nb], scores L = Q^ K^T / sqrt(Dh) [nb, nb] and their row maximum m_lo.
2. Selection (no gradient). S = L - m_lo, minus 1e4 where the query or key block holds no
   token, plus 5e3 on the diagonal band |i - j| <= D // 2 and on each of the first F block
   rows and block columns (``initial_prior_diagonal_n_blocks`` = D,
   ``initial_prior_first_n_blocks`` = F). The top k = min(nb * block_per_row, nb^2) entries
   of S over the whole grid (not per row) are the high-resolution blocks.
3. High resolution. For every selected block (i, j): exact scores A = Q_i K_j^T / sqrt(Dh)
   [T, T]; m_hi = each query's maximum over its selected blocks (no gradient);
   P = exp(A - m_hi) with padded keys removed; O_hi = sum P V_j and Z_hi = sum P are
   accumulated into query block i.
4. Combination. ``approx_mode="full"`` (MRA-2): the blocks not selected contribute at low
   resolution, P_lo = exp(L - m_lo) * c_j (selected and empty blocks removed), O_lo = P_lo V^,
   Z_lo = sum_j P_lo, shared by the T queries of block i; both parts are brought to the
   common maximum max(m_lo, m_hi) and out = (O_hi + O_lo) / (Z_hi + Z_lo + 1e-6).
   ``approx_mode="sparse"`` (MRA-2-s): out = O_hi / (Z_hi + 1e-6).
When the budget covers every block, both modes are exact softmax attention.

This is a pure-JAX version of the published algorithm (facts from the authors' repository
mlpen/mra-attention, no code taken from it). The published version needs CUDA kernels, fp32,
N a multiple of 32 and k a multiple of 4; this one runs wherever JAX runs, on any N (padded
internally to a multiple of T and masked), any k, fp32 or bf16 inputs (statistics in fp32).
Memory is O(nb^2 + k T^2 + k T Dh) per head, never N x N: the selected blocks are gathered
([k, T, Dh]), multiplied in one batched matmul, and scatter-added back with ``segment_sum``;
``chunk_size`` runs the (batch x head) pairs in sequential chunks with rematerialisation, so
the fwd+bwd peak is that of one chunk (on CPU, ``chunk_size=1`` is also the fastest: the
per-head buffers stay small enough to be reused instead of freshly mapped).

Where this differs from the published code (none changes a value beyond the 1e-6 in the
normaliser, except the second, which fixes blocks being dropped):
- m_hi is the maximum over the *valid* keys of the selected blocks (the published kernel also
  counts the zero scores of zeroed padded keys and truncates the maximum to 1e-3); this avoids
  an underflow when every real score is far below zero;
- the low-resolution part removes exactly the k selected blocks. The published code removes
  every block whose selection score is at least the k-th largest; with priors, scores tie
  exactly (a row maximum scores 0, so 5e3 after one prior), and a block tied with the k-th but
  not selected then counts in neither part. The two agree whenever the k-th score has no tie,
  e.g. in the LRA settings (block_per_row 8 >> 3 prior blocks per row);
- block means divide by the token count (the published code divides by count + 1e-6).
Queries at padded positions return zeros, as in the published code (``dense_attention``
returns their attention over the valid keys). The selection itself reproduces the published rule, including its row maximum taken over
all key blocks (an empty key block has K^ = 0 and so a score of 0); ties in the top-k go to
the lower row-major block index (``lax.top_k``).

Images (``image_shape=(H, W)``, the mixer option): tokens are permuted so that every run of
32 tokens is a 4 x 8 pixel patch (rows of 8 pixels, 4 rows), attention runs on that order,
and the output is permuted back. The sequence must be exactly the H * W pixels in row-major
order; a CLS token at position 0 is not supported (H * W would not equal N).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lra_wavelet.attention import register
from lra_wavelet.attention.projection import ProjectedAttention

APPROX_MODES = ("full", "sparse")
PATCH_SHAPE = (4, 8)  # pixel rows x pixel columns of one 32-token block in image mode

_EMPTY_PENALTY = 1e4  # selection score subtracted where a query or key block holds no token
_PRIOR_BONUS = 5e3  # selection score added per prior (diagonal band, first rows, first cols)
_EPS = 1e-6  # added to the softmax normaliser, as in the published code


def num_selected_blocks(n: int, block_per_row: int, block_size: int = 32) -> int:
  """The high-resolution budget k = min(nb * block_per_row, nb^2), nb = ceil(n / block_size)."""
  nb = -(-n // block_size)
  return min(nb * block_per_row, nb * nb)


def _check_options(block_per_row, approx_mode, first_n, diagonal_n, block_size, chunk_size):
  if not isinstance(block_per_row, (int, np.integer)) or block_per_row < 1:
    raise ValueError(f"block_per_row must be a positive integer, got {block_per_row!r}.")
  if approx_mode not in APPROX_MODES:
    raise ValueError(f"approx_mode must be one of {APPROX_MODES}, got {approx_mode!r}.")
  for name, value in (("initial_prior_first_n_blocks", first_n),
                      ("initial_prior_diagonal_n_blocks", diagonal_n)):
    if not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
  if not isinstance(block_size, (int, np.integer)) or block_size < 1:
    raise ValueError(f"block_size must be a positive integer, got {block_size!r}.")
  if chunk_size not in (None, "auto") and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
    raise ValueError(f"chunk_size must be a positive integer, None or 'auto', got {chunk_size!r}.")


def resolve_chunk_size(chunk_size: int | str | None) -> int | None:
  """"auto": one (batch, head) pair at a time on the CPU (fastest and leanest there, see the
  module docstring), all pairs at once on accelerators, whose parallelism needs them."""
  if chunk_size == "auto":
    return 1 if jax.default_backend() == "cpu" else None
  return chunk_size


def _prior_grid(nb: int, first_n: int, diagonal_n: int) -> list[np.ndarray]:
  """The prior terms of the selection score, each bool[nb, nb], in the order they are added."""
  i = np.arange(nb)
  terms = []
  if diagonal_n > 0:
    terms.append(np.abs(i[:, None] - i[None, :]) <= diagonal_n // 2)
  if first_n > 0:
    terms.append(np.broadcast_to(i[:, None] < first_n, (nb, nb)))
    terms.append(np.broadcast_to(i[None, :] < first_n, (nb, nb)))
  return terms


def _select_blocks(scores, row_max, occupied, num_sel, first_n, diagonal_n):
  """Top-k blocks of the selection score. scores: f32[G, nb, nb]; row_max: [G, nb];
  occupied: bool[G, nb] -> sorted flat indices int32[G, k] into the nb x nb grid."""
  g, nb, _ = scores.shape
  s = scores - row_max[:, :, None]
  empty = ~(occupied[:, :, None] & occupied[:, None, :])
  s = s - _EMPTY_PENALTY * empty.astype(jnp.float32)
  for term in _prior_grid(nb, first_n, diagonal_n):
    s = s + jnp.asarray(term, jnp.float32) * _PRIOR_BONUS
  _, idx = jax.lax.top_k(s.reshape(g, nb * nb), num_sel)
  return jnp.sort(idx, axis=-1)


def _mra_groups(qb, kb, vb, valid, *, num_sel, approx_mode, first_n, diagonal_n):
  """MRA-2 on G independent (batch x head) groups.

  qb, kb, vb: [G, nb, T, Dh] (any float dtype); valid: bool[G, nb, T].
  Returns f32[G, nb, T, Dh], zero at invalid query positions.
  """
  g, nb, t, dh = qb.shape
  f32 = jnp.float32
  scale = dh ** -0.5
  weight = valid.astype(f32)
  count = weight.sum(-1)  # [G, nb] tokens per block
  occupied = count > 0
  inv_count = 1.0 / jnp.maximum(count, 1.0)

  def block_mean(x):  # [G, nb, T, Dh] -> f32[G, nb, Dh], padding excluded
    return jnp.einsum("gbt,gbtd->gbd", weight, x.astype(f32)) * inv_count[..., None]

  # 1. Low resolution.
  q_hat, k_hat = block_mean(qb), block_mean(kb)
  low = jnp.einsum("gid,gjd->gij", q_hat, k_hat) * scale  # [G, nb, nb]
  # Row maximum over all key blocks, empty ones included (their K^ = 0 gives a score of 0), as
  # in the published selection rule; it is only a shift for the low-resolution softmax.
  m_lo = jax.lax.stop_gradient(low.max(-1))  # [G, nb]

  # 2. Selection (no gradient).
  idx = _select_blocks(jax.lax.stop_gradient(low), m_lo, occupied, num_sel, first_n, diagonal_n)
  rows, cols = idx // nb, idx % nb  # [G, k], rows ascending
  base = jnp.arange(g, dtype=idx.dtype)[:, None] * nb
  seg = (base + rows).reshape(-1)  # flat query-block id of each selected block, sorted
  key_blk = (base + cols).reshape(-1)

  # 3. High resolution: gather the selected blocks and multiply them in one batch.
  q_sel = qb.reshape(g * nb, t, dh)[seg]  # [G*k, T, Dh]
  k_sel = kb.reshape(g * nb, t, dh)[key_blk]
  v_sel = vb.reshape(g * nb, t, dh)[key_blk]
  key_ok = valid.reshape(g * nb, t)[key_blk]  # [G*k, T]
  a = jnp.einsum("sqd,skd->sqk", q_sel, k_sel, preferred_element_type=f32) * scale
  a = jnp.where(key_ok[:, None, :], a, -jnp.inf)  # [G*k, T, T]
  m_hi = jax.ops.segment_max(jax.lax.stop_gradient(a.max(-1)), seg, num_segments=g * nb,
                             indices_are_sorted=True)  # [G*nb, T], -inf: no valid key seen
  has_hi = jnp.isfinite(m_hi)
  # A finite stand-in where a query saw no valid key (its high-resolution sums are zero).
  m_hi = jnp.where(has_hi, m_hi, jnp.repeat(m_lo.reshape(-1, 1), t, axis=1))
  p = jnp.exp(a - m_hi[seg][:, :, None])  # [G*k, T, T]
  pv = jnp.einsum("sqk,skd->sqd", p.astype(v_sel.dtype), v_sel, preferred_element_type=f32)
  o_hi = jax.ops.segment_sum(pv, seg, num_segments=g * nb, indices_are_sorted=True)
  z_hi = jax.ops.segment_sum(p.sum(-1), seg, num_segments=g * nb, indices_are_sorted=True)
  o_hi = o_hi.reshape(g, nb, t, dh)
  z_hi = z_hi.reshape(g, nb, t)
  m_hi = m_hi.reshape(g, nb, t)

  if approx_mode == "sparse":
    out = o_hi / (z_hi + _EPS)[..., None]
  else:
    # 4. Low-resolution remainder, on the blocks that were not selected.
    v_hat = block_mean(vb)
    selected = jnp.zeros((g, nb * nb), bool).at[jnp.arange(g)[:, None], idx].set(True)
    keep = (occupied[:, :, None] & occupied[:, None, :]) & ~selected.reshape(g, nb, nb)
    p_lo = jnp.where(keep, jnp.exp(low - m_lo[:, :, None]), 0.0) * count[:, None, :]
    o_lo = jnp.einsum("gij,gjd->gid", p_lo, v_hat)  # [G, nb, Dh]
    z_lo = p_lo.sum(-1)  # [G, nb]
    # Common maximum per query; both shifts are constants, so exp(shift) only rescales.
    m = jnp.maximum(m_hi, m_lo[:, :, None])
    w_hi = jnp.exp(m_hi - m)
    w_lo = jnp.exp(m_lo[:, :, None] - m)
    num = o_hi * w_hi[..., None] + o_lo[:, :, None, :] * w_lo[..., None]
    den = z_hi * w_hi + z_lo[:, :, None] * w_lo + _EPS
    out = num / den[..., None]
  return jnp.where(valid[..., None], out, 0.0)


def _in_chunks(fn, arrays, chunk_size):
  """fn over the leading axis of ``arrays`` in sequential chunks of ``chunk_size`` (the last
  one may be smaller), each rematerialised in the backward pass; concatenated outputs."""
  g = arrays[0].shape[0]
  fn = jax.checkpoint(fn)
  steps, rest = divmod(g, chunk_size)
  outs = []
  if steps:
    split = lambda x: x[:steps * chunk_size].reshape(steps, chunk_size, *x.shape[1:])
    ys = jax.lax.map(lambda xs: fn(*xs), tuple(map(split, arrays)))
    outs.append(ys.reshape(steps * chunk_size, *ys.shape[2:]))
  if rest:
    outs.append(fn(*(x[steps * chunk_size:] for x in arrays)))
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs)


def mra2_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, *,
                   block_per_row: int, approx_mode: str = "full",
                   initial_prior_first_n_blocks: int = 0,
                   initial_prior_diagonal_n_blocks: int = 0, block_size: int = 32,
                   chunk_size: int | str | None = None) -> jax.Array:
  """MRA-2 / MRA-2-s attention (see the module docstring for the algorithm).

  Args:
    q, k, v: [B, H, N, Dh], float32 or bfloat16 (any N).
    mask: [B, N], 1/True at tokens, 0/False at padding; None means no padding.
    block_per_row: high-resolution budget per block row; k = min(nb * block_per_row, nb^2).
    approx_mode: "full" (MRA-2, low-resolution remainder) or "sparse" (MRA-2-s).
    initial_prior_first_n_blocks: F, the first F block rows and columns are selected first.
    initial_prior_diagonal_n_blocks: D, the band |i - j| <= D // 2 is selected first.
    block_size: T, tokens per block (32 in the paper).
    chunk_size: process this many (batch, head) pairs at a time, sequentially, recomputing
      each chunk's forward in the backward pass: fwd+bwd memory is that of one chunk, for
      about one more forward of time. None processes all B * H pairs at once; "auto" picks
      per platform (``resolve_chunk_size``).

  Returns:
    [B, H, N, Dh] in q's dtype; zeros at padded query positions.
  """
  _check_options(block_per_row, approx_mode, initial_prior_first_n_blocks,
                 initial_prior_diagonal_n_blocks, block_size, chunk_size)
  if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
    raise ValueError(f"q, k, v must all have shape [B, H, N, Dh]; got {q.shape}, {k.shape}, "
                     f"{v.shape}.")
  b, h, n, dh = q.shape
  if mask is None:
    mask = jnp.ones((b, n), bool)
  if mask.shape != (b, n):
    raise ValueError(f"mask must have shape [B, N] = {(b, n)}, got {mask.shape}.")

  t = block_size
  nb = -(-n // t)
  pad = nb * t - n
  valid = mask.astype(bool)
  if pad:
    widths = ((0, 0), (0, 0), (0, pad), (0, 0))
    q, k, v = (jnp.pad(x, widths) for x in (q, k, v))
    valid = jnp.pad(valid, ((0, 0), (0, pad)))
  g = b * h
  blocks = [x.reshape(g, nb, t, dh) for x in (q, k, v)]
  valid = jnp.broadcast_to(valid[:, None, :], (b, h, nb * t)).reshape(g, nb, t)

  def run(qb, kb, vb, vd):
    return _mra_groups(qb, kb, vb, vd, num_sel=num_selected_blocks(n, block_per_row, t),
                       approx_mode=approx_mode, first_n=initial_prior_first_n_blocks,
                       diagonal_n=initial_prior_diagonal_n_blocks)

  chunk_size = resolve_chunk_size(chunk_size)
  if chunk_size is None or chunk_size >= g:
    out = run(*blocks, valid)
  else:
    out = _in_chunks(run, (*blocks, valid), chunk_size)
  out = out.reshape(b, h, nb * t, dh)[:, :, :n]
  return out.astype(q.dtype)


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int]:
  """(height, width) as ints; both divisible by the patch of one block."""
  if len(image_shape) != 2:
    raise ValueError(f"image_shape must be (height, width), got {image_shape!r}.")
  height, width = (int(s) for s in image_shape)
  ph, pw = PATCH_SHAPE
  if height < 1 or width < 1 or height % ph or width % pw:
    raise ValueError(f"image_shape {height}x{width} must be divisible by the {ph}x{pw} patch of "
                     f"one block; use a height divisible by {ph} and a width divisible by {pw}.")
  return height, width


def _check_image(image_shape: Sequence[int], n: int) -> tuple[int, int]:
  height, width = _check_image_shape(image_shape)
  if height * width != n:
    raise ValueError(f"image_shape {height}x{width} has {height * width} pixels but the sequence "
                     f"has {n} tokens; the sequence must be the pixels alone (no CLS token).")
  return height, width


def to_patch_order(x: jax.Array, image_shape: Sequence[int], axis: int = 1) -> jax.Array:
  """Reorder the row-major pixels along ``axis`` so each run of 32 is a 4 x 8 pixel patch.

  Patches are ordered row-major over the image, pixels row-major inside a patch.
  """
  axis = axis % x.ndim
  height, width = _check_image(image_shape, x.shape[axis])
  ph, pw = PATCH_SHAPE
  lead, tail = x.shape[:axis], x.shape[axis + 1:]
  y = x.reshape(*lead, height // ph, ph, width // pw, pw, *tail)
  a = len(lead)
  y = jnp.moveaxis(y, a + 2, a + 1)  # [..., H/ph, W/pw, ph, pw, ...]
  return y.reshape(*lead, height * width, *tail)


def from_patch_order(x: jax.Array, image_shape: Sequence[int], axis: int = 1) -> jax.Array:
  """Inverse of ``to_patch_order``: back to row-major pixel order along ``axis``."""
  axis = axis % x.ndim
  height, width = _check_image(image_shape, x.shape[axis])
  ph, pw = PATCH_SHAPE
  lead, tail = x.shape[:axis], x.shape[axis + 1:]
  y = x.reshape(*lead, height // ph, width // pw, ph, pw, *tail)
  a = len(lead)
  y = jnp.moveaxis(y, a + 1, a + 2)  # [..., H/ph, ph, W/pw, pw, ...]
  return y.reshape(*lead, height * width, *tail)


@register("mra")
class MRAAttention(ProjectedAttention):
  """MRA-2 mixer (multi-head projections + ``mra2_attention`` with ``approx_mode="full"``).

  Options: ``block_per_row`` (default 8), ``initial_prior_first_n_blocks``,
  ``initial_prior_diagonal_n_blocks``, ``block_size`` (32), ``image_shape`` (optional (H, W):
  attend in 4 x 8 patch order; needs ``block_size`` 32, N = H * W and no CLS token),
  ``chunk_size`` (see ``mra2_attention``; default "auto"), plus ``qkv_dim`` and ``dropout``.
  """

  approx_mode = "full"

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, block_per_row: int = 8,
               initial_prior_first_n_blocks: int = 0, initial_prior_diagonal_n_blocks: int = 0,
               block_size: int = 32, image_shape: Sequence[int] | None = None,
               chunk_size: int | str | None = "auto"):
    super().__init__(dim=dim, num_heads=num_heads, rngs=rngs, qkv_dim=qkv_dim, dropout=dropout)
    _check_options(block_per_row, self.approx_mode, initial_prior_first_n_blocks,
                   initial_prior_diagonal_n_blocks, block_size, chunk_size)
    if image_shape is not None:
      ph, pw = PATCH_SHAPE
      if block_size != ph * pw:
        raise ValueError(f"image_shape needs block_size={ph * pw} (one {ph}x{pw} patch per "
                         f"block), got block_size={block_size}.")
      image_shape = _check_image_shape(image_shape)
    self.block_per_row = block_per_row
    self.initial_prior_first_n_blocks = initial_prior_first_n_blocks
    self.initial_prior_diagonal_n_blocks = initial_prior_diagonal_n_blocks
    self.block_size = block_size
    self.image_shape = image_shape
    self.chunk_size = chunk_size

  def attend(self, q, k, v, mask, *, deterministic):
    if self.image_shape is not None:
      q, k, v = (to_patch_order(x, self.image_shape, axis=2) for x in (q, k, v))
      mask = to_patch_order(mask, self.image_shape, axis=1)
    out = mra2_attention(
        q, k, v, mask, block_per_row=self.block_per_row, approx_mode=self.approx_mode,
        initial_prior_first_n_blocks=self.initial_prior_first_n_blocks,
        initial_prior_diagonal_n_blocks=self.initial_prior_diagonal_n_blocks,
        block_size=self.block_size, chunk_size=self.chunk_size)
    if self.image_shape is not None:
      out = from_patch_order(out, self.image_shape, axis=2)
    return out


@register("mra_sparse")
class MRASparseAttention(MRAAttention):
  """MRA-2-s mixer: the high-resolution blocks only (``approx_mode="sparse"``)."""

  approx_mode = "sparse"
