"""Step-by-step NumPy transcription of published MRA-2 attention (Zeng et al., ICML 2022).

An independent reference for ``lra_wavelet.attention.mra``: plain loops over (batch, head)
and over blocks, float64 except the block-selection score, which is kept in float32 like the
authors' GPU code so that the 5e3 priors round the same way. It follows the published
behaviour literally, including the details the JAX version handles differently (see its
module docstring): inputs multiplied by the mask, block means divided by count + 1e-6, the
low-resolution row maximum taken before empty blocks are penalised, the high-resolution row
maximum taken over the selected blocks' scores with padded keys counted as score 0,
truncated to 1e-3 and -1e5 for a query with no selected block.

One published detail is a switch: the published low-resolution part removes every block
whose selection score is at least the k-th largest (``removal="threshold"``). With the 5e3
priors, scores tie exactly (a row maximum scores 0, so 5e3 after one prior), and a block tied
with the k-th but not among the k selected is then dropped from both resolutions. The JAX
version removes exactly the selected blocks (``removal="selected"``, the paper's definition);
the two agree whenever the k-th score has no tie. Ties in the top-k go to the lower
row-major block index (a stable sort).
Only for sequence lengths that are a multiple of the block size, as the published code.
"""

from __future__ import annotations

import numpy as np


def mra2_reference(q, k, v, mask, *, block_per_row, approx_mode="full",
                   initial_prior_first_n_blocks=0, initial_prior_diagonal_n_blocks=0,
                   block_size=32, removal="selected"):
  """q, k, v: [B, H, N, Dh]; mask: [B, N] (1 = token). Returns float64 [B, H, N, Dh].

  removal: "selected" (the k selected blocks leave the low-resolution part) or "threshold"
  (every block scoring at least the k-th, as the published code).
  """
  assert removal in ("selected", "threshold")
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  mask = np.asarray(mask, np.float64)
  b, h, n, d = q.shape
  t = block_size
  assert n % t == 0, "the published algorithm needs N to be a multiple of the block size"
  nb = n // t
  num_sel = min(nb * block_per_row, nb * nb)
  out = np.zeros_like(q)
  for bi in range(b):
    m = mask[bi]
    for hi in range(h):
      out[bi, hi] = _one_head(q[bi, hi] * m[:, None], k[bi, hi] * m[:, None],
                              v[bi, hi] * m[:, None], m, t, nb, d, num_sel, approx_mode,
                              initial_prior_first_n_blocks, initial_prior_diagonal_n_blocks,
                              removal)
  return out


def _one_head(qh, kh, vh, m, t, nb, d, num_sel, approx_mode, first_n, diagonal_n, removal):
  blk = lambda x, i: x[i * t:(i + 1) * t]
  count = np.array([blk(m, i).sum() for i in range(nb)])
  q_hat = np.stack([blk(qh, i).sum(0) / (count[i] + 1e-6) for i in range(nb)])
  k_hat = np.stack([blk(kh, i).sum(0) / (count[i] + 1e-6) for i in range(nb)])
  v_hat = np.stack([blk(vh, i).sum(0) / (count[i] + 1e-6) for i in range(nb)])

  # Low resolution: block scores, row maximum (before the empty-block penalty), penalty.
  low = np.zeros((nb, nb))
  for i in range(nb):
    for j in range(nb):
      low[i, j] = q_hat[i] @ k_hat[j] / np.sqrt(d)
  row_max = low.max(axis=1)
  for i in range(nb):
    for j in range(nb):
      if count[i] * count[j] < 0.5:
        low[i, j] -= 1e4

  # Selection score in float32, priors added one after the other, global top-k.
  score = (low - row_max[:, None]).astype(np.float32)
  bonus = np.float32(5e3)
  if diagonal_n > 0:
    for i in range(nb):
      for j in range(nb):
        if abs(i - j) <= diagonal_n // 2:
          score[i, j] += bonus
  if first_n > 0:
    score[:first_n, :] += bonus
    score[:, :first_n] += bonus
  flat = score.reshape(-1)
  chosen = np.argsort(-flat, kind="stable")[:num_sel]
  if removal == "threshold":
    removed = score >= flat[chosen].min()
  else:
    removed = np.zeros(nb * nb, bool)
    removed[chosen] = True
    removed = removed.reshape(nb, nb)

  # High resolution: per-query maximum over the selected blocks (padded keys score 0 here).
  logits = {}
  for c in chosen:
    i, j = divmod(int(c), nb)
    logits[i, j] = blk(qh, i) @ blk(kh, j).T / np.sqrt(d)
  m_hi = np.full((nb, t), -1e5)
  for (i, j), a in logits.items():
    m_hi[i] = np.maximum(m_hi[i], np.trunc(a.max(axis=1) * 1000) / 1000)
  o_hi = np.zeros((nb, t, d))
  z_hi = np.zeros((nb, t))
  for (i, j), a in logits.items():
    p = np.exp(a - m_hi[i][:, None] - 1e4 * (1 - blk(m, j))[None, :])
    o_hi[i] += p @ blk(vh, j)
    z_hi[i] += p.sum(axis=1)

  if approx_mode == "sparse":
    out = o_hi / (z_hi[..., None] + 1e-6)
  else:
    p_lo = np.exp(low - row_max[:, None] - 1e4 * removed) * count[None, :]
    o_lo = p_lo @ v_hat  # [nb, d], shared by the t queries of each block
    z_lo = p_lo.sum(axis=1)
    out = np.zeros((nb, t, d))
    for i in range(nb):
      for r in range(t):
        corr = (row_max[i] - m_hi[i, r]) * m[i * t + r]
        lo_c = np.exp(corr) if corr <= 0 else 1.0
        hi_c = np.exp(-corr) if corr > 0 else 1.0
        out[i, r] = (o_hi[i, r] * hi_c + o_lo[i] * lo_c) / (z_hi[i, r] * hi_c + z_lo[i] * lo_c
                                                             + 1e-6)
  return out.reshape(nb * t, d) * m[:, None]
