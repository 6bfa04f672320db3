"""WERSA: Wavelet-Enhanced Random Spectral Attention (Dentamaro 2025, arXiv 2507.08637).

A linear-time mixer in four steps (REFERENCES.md §3):

1. Content-adaptive gates from the block input x [B, N, D]: a depthwise convolution over the
   sequence, then Linear(D -> D/4) -> ReLU -> Linear(D/4 -> L+1) -> sigmoid, times a learnable
   weight per scale: one gate per scale and position, ``gates [B, N, L+1]``.
2. Queries and keys pass through GELU and a multi-resolution step: an L-level Haar
   decomposition along the sequence, every band multiplied by its gate, then the inverse.
   Values are left as they are. The gates are shared by all heads and channels, so this step
   runs on the projections with heads merged, [B, N, H*Dh].
3. Random spectral features phi: ``relu`` (the paper's map, ReLU((x / bw) W) / sqrt(R)) or
   ``favor`` (positive exponential features of FAVOR+, Choromanski et al. 2021), with a fixed
   Gaussian W [Dh, R] and a learnable bandwidth bw = softplus(p) + 0.1.
4. Linear attention out_t = phi(q_t) (sum_s phi(k_s)^T v_s) / (phi(q_t) . sum_s phi(k_s) + eps)
   and a LayerNorm over each head's Dh channels.

The authors published no code; this is a transcription of the description, written so that
every step has a test against an independent reference.

Bidirectional multi-resolution step. The sequence is zero-padded to a multiple of 2^L (with
periodised Haar the supports of all coefficients are then disjoint aligned blocks, so this
gives the same values on the real positions as padding to a power of two), decomposed with
``lra_wavelet.wavelets.dwt.wavedec(..., "haar", mode="periodization")``; the coefficient of a
band whose basis function covers the block [i 2^j, (i+1) 2^j) is multiplied by the mean of
that band's gate over the real positions of the block, then ``waverec`` and crop.

Causal multi-resolution step (``causal=True``). The decimated Haar transform is not causal:
the level-j approximation at position t is the mean over the aligned block of 2^j positions
that contains t, which reaches into the future. The causal variant replaces each aligned
block by the trailing window of 2^j positions that *ends* at t (zeros before the start):

    A_0(t) = x(t),   A_j(t) = (A_{j-1}(t) + A_{j-1}(t - 2^(j-1))) / 2   (= mean of x[t-2^j+1 .. t])
    D_j(t) = A_{j-1}(t) - A_j(t) = (A_{j-1}(t) - A_{j-1}(t - 2^(j-1))) / 2

D_j is the Haar wavelet (difference of the means of two adjacent half windows) evaluated on
the window ending at t, i.e. the stationary (undecimated) Haar transform with a causal
alignment. Every A_j(t) and D_j(t) is a combination of x at positions <= t only, and the
decomposition telescopes, x = A_L + D_L + ... + D_1, so the "inverse" is the sum of the bands
and the gated output y(t) = g_0(t) A_L(t) + sum_j g_{L+1-j}(t) D_j(t) reduces to x when every
gate is 1. Since the bands are not decimated, a band's gate is applied at t directly; the
gated sum is one causal filter of length 2^L per position (``trailing_haar_filters``),
evaluated blockwise as batched matmuls. The rest of the causal path also sees only the past:
the gate convolution pads on the left only, the linear attention is an exact chunked prefix
sum (intra-chunk quadratic with a causal mask, plus a carried state sum phi(k)^T v and
sum phi(k)), and the numerical stabiliser of the ``favor`` key features is a running
(prefix) maximum.

Numerics. Features are carried as (f, a) with phi = f * exp(a): ``relu`` has a = 0; ``favor``
subtracts each row's maximum logit. The attention rescales keys by exp(a_s - M) with M the
maximum over the keys a query may see (global when bidirectional, prefix when causal) and
scales eps by the same factors, so the result equals the plain formula with eps exactly,
only without overflow.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lra_wavelet.attention import register
from lra_wavelet.attention.linear import scaled_features
from lra_wavelet.attention.projection import ProjectedAttention, merge_heads, split_heads
from lra_wavelet.wavelets import dwt

FEATURE_MAPS = ("relu", "favor")
# Log-scale given to padded keys: finite, so that differences of two of them stay finite.
_LOG_FLOOR = -1e30
# exp() argument cap for the rescaled eps (a query that sees no key at all).
_MAX_EXP = 80.0


# ----------------------------------------------------------------------------- multi-resolution


def _block_mean(values: jax.Array, weights: jax.Array, block: int) -> jax.Array:
  """Weighted mean over consecutive blocks. values, weights: [B, N] -> [B, N / block]."""
  b, n = values.shape
  num = (values * weights).reshape(b, n // block, block).sum(-1)
  den = weights.reshape(b, n // block, block).sum(-1)
  return num / jnp.maximum(den, 1.0)


@functools.lru_cache(maxsize=None)
def trailing_haar_filters(levels: int) -> np.ndarray:
  """Causal band filters [L+1, P, 2P], P = 2^L, in ``wavedec`` band order.

  Row p of filter i maps the window x[t - P - p .. t + P - 1 - p] (the block of t and the
  one before; t = p within its block) to band i at t: A_L for i = 0, D_{L+1-i} for i >= 1,
  with A_j(t) the mean of x over the 2^j positions ending at t and D_j = A_{j-1} - A_j.
  Only entries at or before t (column <= P + p) are nonzero; the filters sum to the identity.
  """
  size = 2 ** levels
  means = np.zeros((levels + 1, size, 2 * size))
  for j in range(levels + 1):
    for p in range(size):
      means[j, p, size + p - 2 ** j + 1:size + p + 1] = 2.0 ** -j
  return np.stack([means[levels]] + [means[levels - i] - means[levels + 1 - i]
                                     for i in range(1, levels + 1)])


def _causal_bands(x: jax.Array, gates: jax.Array) -> jax.Array:
  """Gated trailing-window Haar bands. x [B, N, C] (N a multiple of 2^L), gates [B, N, L+1].

  y(t) = sum_i g_i(t) band_i(t) is one causal filter of length 2^L per position,
  sum_i g_i(t) filter_i[p]; applied blockwise as two batched matmuls (the block of t and the
  one before), which XLA runs much faster than the recursion A_j = (A_{j-1} + delayed) / 2.
  """
  b, n, c = x.shape
  levels = gates.shape[-1] - 1
  size = 2 ** levels
  blocks = n // size
  filters = jnp.asarray(trailing_haar_filters(levels), x.dtype)
  kernel = jnp.einsum("bkpi,ipq->bkpq", gates.reshape(b, blocks, size, levels + 1), filters)
  current = x.reshape(b, blocks, size, c)
  previous = jnp.pad(current, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :blocks]
  y = (jnp.einsum("bkpq,bkqc->bkpc", kernel[..., :size], previous)
       + jnp.einsum("bkpq,bkqc->bkpc", kernel[..., size:], current))
  return y.reshape(b, n, c)


def haar_gate(x: jax.Array, gates: jax.Array, mask: jax.Array | None = None, *,
              causal: bool = False) -> jax.Array:
  """Gated Haar multi-resolution step along the sequence axis.

  Args:
    x: [B, N, C] queries or keys with heads merged (C = H * Dh): the gates are shared by all
      heads and channels.
    gates: [B, N, L+1] per-position gates, in ``wavedec`` band order: index 0 = the level-L
      approximation, index i >= 1 = the detail band of level L+1-i (index L = finest).
    mask: bool[B, N], True at real tokens; x is zeroed at padding first and padded positions
      do not enter the gate means.
    causal: use the trailing-window (stationary, causally aligned) Haar bands described in
      the module docstring instead of the decimated transform.

  Returns:
    [B, N, C]; equal to x (at real positions) when every gate is 1.
  """
  b, n, _ = x.shape
  if gates.ndim != 3 or gates.shape[:2] != (b, n) or gates.shape[-1] < 2:
    raise ValueError(f"gates must have shape [B, N, L+1] = [{b}, {n}, >=2] to match x "
                     f"{x.shape}, got {gates.shape}")
  levels = gates.shape[-1] - 1
  valid = jnp.ones((b, n), bool) if mask is None else mask.astype(bool)
  x = jnp.where(valid[..., None], x, 0.0)
  gates = gates.astype(x.dtype)
  block = 2 ** levels
  n_pad = -(-n // block) * block  # zeros appended at the end: harmless for the causal form
  x = jnp.pad(x, ((0, 0), (0, n_pad - n), (0, 0)))
  gates = jnp.pad(gates, ((0, 0), (0, n_pad - n), (0, 0)))
  if causal:
    return _causal_bands(x, gates)[:, :n]

  weights = jnp.pad(valid, ((0, 0), (0, n_pad - n))).astype(x.dtype)
  coeffs = dwt.wavedec(x, "haar", level=levels, mode="periodization", axis=1)
  gated = [_block_mean(gates[..., i], weights, n_pad // c.shape[1])[..., None] * c
           for i, c in enumerate(coeffs)]
  return dwt.waverec(gated, "haar", mode="periodization", axis=1)[:, :n]


# ----------------------------------------------------------------------------- features


def spectral_features(x: jax.Array, w: jax.Array, bandwidth: jax.Array | float,
                      kind: str = "relu") -> tuple[jax.Array, jax.Array]:
  """Random spectral features, returned as (f, a) with phi(x) = f * exp(a)[..., None].

  Args:
    x: [..., Dh]; w: [Dh, R] random matrix; bandwidth: positive scalar bw.
    kind: ``relu``: phi = ReLU((x / bw) W) / sqrt(R) (a = 0); ``favor``:
      phi = exp((x / bw) W - |x / bw|^2 / 2) / sqrt(R), stored with the row maximum of the
      exponent moved into a (a constant of the differentiation: the result does not depend
      on it).

  Returns:
    f: [..., R] and a: [...].
  """
  if kind not in FEATURE_MAPS:
    raise ValueError(f"feature map {kind!r} is unknown; use one of {', '.join(FEATURE_MAPS)}")
  return scaled_features(x / bandwidth, w, positive=kind == "favor")


# ----------------------------------------------------------------------------- linear attention


def _scaled_eps(eps: float, log_scale: jax.Array) -> jax.Array:
  """eps * exp(-log_scale), capped so a query without keys gets a large finite value."""
  return eps * jnp.exp(jnp.minimum(-log_scale, _MAX_EXP))


FeatureFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def _key_features(features: FeatureFn, k: jax.Array, valid: jax.Array):
  """Key features with padded keys removed: f = 0 and a = _LOG_FLOOR where not ``valid``."""
  kf, ka = features(k)
  kf = jnp.where(valid[..., None], kf, 0.0)
  return kf, jax.lax.stop_gradient(jnp.where(valid, ka, _LOG_FLOOR))


def _bidirectional(q, k, v, valid, features, eps):
  qf, qa = features(q)
  kf, ka = _key_features(features, k, valid)
  top = jnp.max(ka, axis=-1)  # [B, H]
  kw = kf * jnp.exp(ka - top[..., None])[..., None]
  kv = jnp.einsum("bhnr,bhnd->bhrd", kw, v)
  z = jnp.sum(kw, axis=2)
  num = jnp.einsum("bhnr,bhrd->bhnd", qf, kv)
  den = jnp.einsum("bhnr,bhr->bhn", qf, z)
  return num / (den + _scaled_eps(eps, qa + top[..., None]))[..., None]


def _causal(q, k, v, valid, features, eps, chunk):
  b, h, n, dh = v.shape
  pad = (-n) % chunk
  nc = (n + pad) // chunk
  seq_pad = [(0, 0), (0, 0), (0, pad)]
  q, k, v = (jnp.pad(t, seq_pad + [(0, 0)]) for t in (q, k, v))
  valid = jnp.pad(valid, seq_pad)
  causal_mask = jnp.tril(jnp.ones((chunk, chunk), bool))

  # Features are computed chunk by chunk, so no [N, R] array is stored for the backward pass.
  # The state (kv, z) is kept in units of exp(-top_prev), top_prev the running maximum of the
  # key log-scales so far; inside a chunk, key s reaches query t with weight exp(a_s - top_t).
  # Rematerialised in the backward pass, so only the carried state is stored per chunk.
  @jax.checkpoint
  def step(carry, start):
    kv, z, top_prev = carry  # [B, H, R, Dh], [B, H, R], [B, H]
    q_c, k_c, v_c, valid_c = (jax.lax.dynamic_slice_in_dim(t, start, chunk, axis=2)
                              for t in (q, k, v, valid))  # [B, H, C, ...]
    qf, qa = features(q_c)
    kf, ka = _key_features(features, k_c, valid_c)  # [B, H, C, R], [B, H, C]
    top = jnp.maximum(jax.lax.cummax(ka, axis=2), top_prev[..., None])  # [B, H, C]
    rel = jnp.where(causal_mask, ka[..., None, :] - top[..., :, None], -jnp.inf)
    scores = jnp.einsum("bhtr,bhsr->bhts", qf, kf) * jnp.exp(rel)
    carried = jnp.exp(top_prev[..., None] - top)  # <= 1
    num = (jnp.einsum("bhts,bhsd->bhtd", scores, v_c)
           + jnp.einsum("bhtr,bhrd->bhtd", qf, kv) * carried[..., None])
    den = jnp.sum(scores, axis=-1) + jnp.einsum("bhtr,bhr->bht", qf, z) * carried
    out = num / (den + _scaled_eps(eps, qa + top))[..., None]
    top_end = top[..., -1]
    kw = kf * jnp.exp(ka - top_end[..., None])[..., None]
    decay = jnp.exp(top_prev - top_end)
    kv = kv * decay[..., None, None] + jnp.einsum("bhsr,bhsd->bhrd", kw, v_c)
    z = z * decay[..., None] + jnp.sum(kw, axis=2)
    return (kv, z, top_end), out

  r = jax.eval_shape(features, q[:, :, :1])[0].shape[-1]
  init = (jnp.zeros((b, h, r, dh), v.dtype), jnp.zeros((b, h, r), v.dtype),
          jnp.full((b, h), _LOG_FLOOR, v.dtype))
  _, out = jax.lax.scan(step, init, jnp.arange(nc) * chunk)  # [N / C, B, H, C, Dh]
  return jnp.moveaxis(out, 0, 2).reshape(b, h, nc * chunk, dh)[:, :, :n]


def linear_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
                     features: FeatureFn, *, causal: bool = False, chunk_size: int = 64,
                     eps: float = 1e-6) -> jax.Array:
  """Normalised linear attention with a feature map phi given as ``features(x) = (f, a)``,
  phi(x) = f * exp(a)[..., None] (as ``spectral_features`` returns it).

  out_t = sum_s phi(q_t).phi(k_s) v_s / (sum_s phi(q_t).phi(k_s) + eps), the sum over real
  keys s (over s <= t when causal), in time and memory linear in N. The causal form is a scan
  over chunks of ``chunk_size`` positions: quadratic inside a chunk, a carried state
  [B, H, R, Dh] between chunks; ``features`` is applied chunk by chunk there.

  Args:
    q, k: [B, H, N, Dk]; v: [B, H, N, Dh]; mask: bool[B, N], True at real tokens (padded
      keys contribute nothing), or None.
    features: maps [..., Dk] to (f [..., R], a [...]), position by position.

  Returns:
    [B, H, N, Dh].
  """
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
  b, h, n, _ = k.shape
  valid = jnp.ones((b, h, n), bool)
  if mask is not None:
    valid = jnp.broadcast_to(mask.astype(bool)[:, None, :], (b, h, n))
  if causal:
    return _causal(q, k, v, valid, features, eps, chunk_size)
  return _bidirectional(q, k, v, valid, features, eps)


def wersa_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
                    gates: jax.Array, w: jax.Array, bandwidth: jax.Array | float, *,
                    num_heads: int, feature_map: str = "relu", causal: bool = False,
                    chunk_size: int = 64, eps: float = 1e-6) -> jax.Array:
  """WERSA core (steps 2-4 of the module docstring, without the output LayerNorm).

  q, k, v: [B, N, H*Dh] projections with heads merged (the layout the multi-resolution step
  runs on); mask: bool[B, N] or None; gates: [B, N, L+1]; w: [Dh, R].
  Computes in float32 and returns [B, H, N, Dh] in q's dtype.
  """
  dtype = q.dtype
  q, k = (haar_gate(jax.nn.gelu(t.astype(jnp.float32), approximate=False), gates, mask,
                    causal=causal) for t in (q, k))
  q, k, v = (split_heads(t.astype(jnp.float32), num_heads) for t in (q, k, v))
  features = functools.partial(spectral_features, w=w.astype(jnp.float32), bandwidth=bandwidth,
                               kind=feature_map)
  out = linear_attention(q, k, v, mask, features, causal=causal, chunk_size=chunk_size, eps=eps)
  return out.astype(dtype)


# ----------------------------------------------------------------------------- modules


class RandomFeatureMatrix(nnx.Variable):
  """The fixed random matrix W of the feature map: part of ``nnx.state`` (so checkpoints hold
  it) but not an ``nnx.Param``, so an optimizer over ``nnx.Param`` never updates it."""


class ScaleGates(nnx.Module):
  """Content-adaptive gates: x [B, N, D] -> [B, N, L+1], sigmoid gates times per-scale weights.

  The depthwise convolution over the sequence is written as a sum of K shifted copies (much
  faster on CPU than a grouped convolution); it pads on the left only when ``causal``, so
  gate t sees x[<= t]. Padded positions of x are zeroed first, so padding content never
  reaches a gate.
  """

  def __init__(self, *, dim: int, levels: int, kernel_size: int, causal: bool, rngs: nnx.Rngs):
    self.padding = (kernel_size - 1, 0) if causal else ((kernel_size - 1) // 2, kernel_size // 2)
    # [K, D]: fan-in K per channel, as for a depthwise nnx.Conv.
    self.conv_kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(),
                                                                 (kernel_size, dim)))
    self.conv_bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
    hidden = max(1, dim // 4)
    self.hidden = nnx.Linear(dim, hidden, rngs=rngs)
    self.logits = nnx.Linear(hidden, levels + 1, rngs=rngs)
    self.scale_weight = nnx.Param(jnp.ones((levels + 1,), jnp.float32))

  def depthwise_conv(self, x: jax.Array) -> jax.Array:
    """[B, N, D] -> [B, N, D]: y_t = sum_i kernel_i * x_{t + i - left} + bias."""
    b, n, d = x.shape
    kernel = self.conv_kernel[...].astype(x.dtype)
    xp = jnp.pad(x, ((0, 0), self.padding, (0, 0)))
    # Products on [B*N, D]: XLA:CPU reduces the kernel gradient of a [1, N, D] product over
    # the middle axis some 30x slower.
    y = sum(xp[:, i:i + n].reshape(b * n, d) * kernel[i] for i in range(kernel.shape[0]))
    return (y + self.conv_bias[...].astype(x.dtype)).reshape(b, n, d)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    x = jnp.where(mask.astype(bool)[..., None], x, 0.0)
    h = jax.nn.relu(self.hidden(self.depthwise_conv(x)))
    return jax.nn.sigmoid(self.logits(h)) * self.scale_weight[...]


@register("wersa")
class WersaAttention(ProjectedAttention):
  """WERSA mixer (Dentamaro 2025): gated Haar multi-resolution q/k + random-feature attention.

  Args:
    dim, num_heads, rngs, qkv_dim, dropout: as in ``ProjectedAttention``.
    causal: autoregressive form (position t uses positions <= t only, everywhere).
    decomp_levels: L, the number of Haar levels (the paper's default 4).
    random_features: R, the number of random features (default 128).
    feature_map: ``relu`` (the paper's) or ``favor`` (positive exponential features).
    gate_kernel_size: width of the depthwise gate convolution (default 3).
    redraw: draw a fresh W on every training call (``deterministic=False``) from the
      ``features`` rng stream and keep it in the state; evaluation uses the stored W.
    bandwidth: initial bw (default 1 for ``relu``, Dh^(1/4) for ``favor``, the FAVOR+ scale).
    chunk_size: chunk length of the causal prefix-sum scan.
    eps: the denominator's eps.
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, causal: bool = False, decomp_levels: int = 4,
               random_features: int = 128, feature_map: str = "relu",
               gate_kernel_size: int = 3, redraw: bool = False,
               bandwidth: float | None = None, chunk_size: int = 64, eps: float = 1e-6):
    if feature_map not in FEATURE_MAPS:
      raise ValueError(f"feature_map={feature_map!r} is unknown; use one of "
                       f"{', '.join(FEATURE_MAPS)}")
    for name, value in (("decomp_levels", decomp_levels), ("random_features", random_features),
                        ("gate_kernel_size", gate_kernel_size), ("chunk_size", chunk_size)):
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if eps <= 0:
      raise ValueError(f"eps must be positive, got {eps}")
    super().__init__(dim=dim, num_heads=num_heads, rngs=rngs, qkv_dim=qkv_dim, dropout=dropout)
    if bandwidth is None:
      bandwidth = 1.0 if feature_map == "relu" else self.head_dim ** 0.25
    if bandwidth <= 0.1:
      raise ValueError(f"bandwidth must exceed 0.1 (bw = softplus(p) + 0.1), got {bandwidth}")
    self.causal = causal
    self.feature_map = feature_map
    self.redraw = redraw
    self.chunk_size = chunk_size
    self.eps = eps
    self.gates = ScaleGates(dim=dim, levels=decomp_levels, kernel_size=gate_kernel_size,
                            causal=causal, rngs=rngs)
    self.features = RandomFeatureMatrix(
        jax.random.normal(rngs.params(), (self.head_dim, random_features), jnp.float32))
    # softplus^-1(bandwidth - 0.1), so that softplus(p) + 0.1 starts at ``bandwidth``.
    self.bandwidth = nnx.Param(jnp.asarray(math.log(math.expm1(bandwidth - 0.1)), jnp.float32))
    self.feature_rngs = rngs["features"].fork() if redraw else nnx.data(None)
    self.norm = nnx.LayerNorm(self.head_dim, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """x: [B, N, D]; mask: bool[B, N] -> [B, N, D]."""
    gates = self.gates(x, mask)
    w = self.features[...]
    if self.redraw and not deterministic:
      w = jax.random.normal(self.feature_rngs(), w.shape, w.dtype)
      self.features[...] = w
    bandwidth = jax.nn.softplus(self.bandwidth[...]) + 0.1
    y = wersa_attention(self.query(x), self.key(x), self.value(x), mask, gates, w, bandwidth,
                        num_heads=self.num_heads, feature_map=self.feature_map,
                        causal=self.causal, chunk_size=self.chunk_size, eps=self.eps)
    y = self.dropout(merge_heads(self.norm(y)), deterministic=deterministic)
    return self.out(y)
