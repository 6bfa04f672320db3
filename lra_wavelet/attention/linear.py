"""Kernelised linear attention: elu+1 features (Katharopoulos et al. 2020, "Transformers are
RNNs") and FAVOR+ random features (Choromanski et al. 2021, "Rethinking Attention with
Performers"), two of the backbones the WavSpA paper wraps.

Both replace exp(q.k / sqrt(Dh)) by a dot product of feature vectors phi(q).phi(k), phi: R^Dh
-> R^R with non-negative entries, so that

    out_t = sum_s phi(q_t).phi(k_s) v_s / (sum_s phi(q_t).phi(k_s) + eps)
          = phi(q_t) S / (phi(q_t) . z + eps),
    S = sum_s phi(k_s)^T v_s [R, Dh],   z = sum_s phi(k_s) [R]

costs O(N R Dh) time and O(N (R + Dh) + R Dh) memory instead of O(N^2).

Feature maps:

* ``linear`` mixer: phi(x) = elu(x) + 1 (R = Dh).
* ``performer`` mixer, with a random matrix W [Dh, R] whose columns are orthogonal random
  features (groups of Dh mutually orthogonal directions, each column's length distributed like
  the norm of a standard Gaussian vector, so every column is marginally N(0, I)) and
  x' = x / Dh^(1/4):
  - kernel ``softmax``: phi(x) = exp(x' W - |x'|^2 / 2) / sqrt(R), the positive random
    features whose dot products are an unbiased estimate of exp(q.k / sqrt(Dh));
  - kernel ``relu``: phi(x) = relu(x' W) / sqrt(R) (the generalised-kernel Performer that the
    WavSpA and LRA tables use).

Numerical stabilisation. The softmax-kernel features exp(x' W - |x'|^2 / 2) underflow float32
(exponents below ~ -87) as soon as |x'| is moderately large, which would turn every sum into
0 / 0. Features are therefore carried as a pair (f, a) with phi = f * exp(a)[..., None]: for the
softmax kernel f = exp(logits - max_r logits) (largest entry 1) and a = max_r logits -
log(sqrt R); for elu and relu a = 0. Keys are rescaled by exp(a_s - M_t), M_t the largest a_s
over the keys query t may see (all real keys; when causal the keys s <= t, a running maximum),
and the query by exp(-a_t), so what is computed is

    out_t = phi(q_t) S / (phi(q_t) . z + eps * exp(a_t + M_t)),

i.e. eps is relative to the largest feature scale in play (for elu and relu features, a = 0 and
M_t = 0, this is exactly the formula above). A query whose features are all tiny still gets a
proper weighted average of the values, as in exact softmax, instead of being pushed to zero
by eps. The scales are constants for differentiation (stop_gradient).

Causal form (``causal=True``): out_t sums over s <= t only. It is computed as a scan over
chunks of ``chunk_size`` positions: inside a chunk a small [C, C] masked product, between
chunks the running state (S, z) carried forward, so memory stays linear in N.

Padding: padded keys get f = 0 and a at a floor value, so they contribute nothing; a query at
a padded position still gets a finite output.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet.attention import register
from lra_wavelet.attention.projection import ProjectedAttention

KERNELS = ("softmax", "relu")
# Log-scale of padded keys: finite, so the difference of two of them is 0 rather than nan.
_LOG_FLOOR = -1e30


# ----------------------------------------------------------------------------- feature maps


def elu_features(x: jax.Array) -> jax.Array:
  """phi(x) = elu(x) + 1 (positive). x: [..., Dh] -> [..., Dh]."""
  return jax.nn.elu(x) + 1.0


def orthogonal_random_matrix(key: jax.Array, dim: int, num_features: int) -> jax.Array:
  """Orthogonal random features W: float32[dim, num_features] (module docstring).

  Columns come in groups of ``dim`` that are mutually orthogonal (a Haar-random orthogonal
  matrix per group: QR of a Gaussian matrix with the signs of diag(R) folded into Q); each
  column is scaled by the norm of an independent standard Gaussian vector in R^dim.
  """
  groups = -(-num_features // dim)
  k_dir, k_len = jax.random.split(key)
  gauss = jax.random.normal(k_dir, (groups, dim, dim), jnp.float32)
  q, r = jnp.linalg.qr(gauss)
  q = q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
  lengths = jnp.linalg.norm(jax.random.normal(k_len, (groups, dim, dim), jnp.float32), axis=-1)
  columns = q * lengths[:, None, :]  # [groups, dim, dim], column j of group g scaled
  return jnp.moveaxis(columns, 0, 1).reshape(dim, groups * dim)[:, :num_features]


def random_features(x: jax.Array, w: jax.Array, kernel: str = "softmax"
                    ) -> tuple[jax.Array, jax.Array]:
  """Performer features of x, returned as (f, a) with phi(x) = f * exp(a)[..., None].

  Args:
    x: [..., Dh] queries or keys.
    w: [Dh, R] random projection (``orthogonal_random_matrix``).
    kernel: ``softmax`` (positive random features) or ``relu``.

  Returns:
    f: [..., R] and a: [...] (zeros for ``relu``).
  """
  if kernel not in KERNELS:
    raise ValueError(f"Performer kernel {kernel!r} is unknown; use one of {', '.join(KERNELS)}")
  return scaled_features(x * x.shape[-1] ** -0.25, w, positive=kernel == "softmax")


def scaled_features(xs: jax.Array, w: jax.Array, *, positive: bool) -> tuple[jax.Array, jax.Array]:
  """Random features of already scaled inputs xs [..., Dh] with w [Dh, R], as (f, a):

  positive: phi = exp(xs W - |xs|^2 / 2) / sqrt(R), the row maximum of the exponent moved into
  a (a constant of the differentiation); else phi = ReLU(xs W) / sqrt(R) with a = 0.
  Performer scales by Dh^-1/4, WERSA by its bandwidth.
  """
  r = w.shape[-1]
  proj = jnp.einsum("...d,dr->...r", xs, w.astype(xs.dtype))
  if not positive:
    return jax.nn.relu(proj) * r ** -0.5, jnp.zeros(proj.shape[:-1], proj.dtype)
  logits = proj - 0.5 * jnp.sum(jnp.square(xs), axis=-1, keepdims=True)
  top = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
  return jnp.exp(logits - top[..., None]), top - 0.5 * math.log(r)


# ----------------------------------------------------------------------------- linear attention


def _divide(num: jax.Array, den: jax.Array, eps: float) -> jax.Array:
  """num / (den + eps), both in the rescaled units; num [..., Dh], den [...]."""
  den = den + eps
  return num / jnp.where(den > 0, den, 1.0)[..., None]


def _bidirectional(qf, kf, ka, v, eps):
  top = jax.lax.stop_gradient(jnp.max(ka, axis=-1, keepdims=True))  # [B, H, 1]
  kw = kf * jnp.exp(ka - top)[..., None]
  state = jnp.einsum("bhsr,bhsd->bhrd", kw, v)
  z = jnp.sum(kw, axis=2)
  num = jnp.einsum("bhtr,bhrd->bhtd", qf, state)
  den = jnp.einsum("bhtr,bhr->bht", qf, z)
  return _divide(num, den, eps)


def _causal(qf, kf, ka, v, eps, chunk):
  b, h, n, r = qf.shape
  dh = v.shape[-1]
  pad = (-n) % chunk
  num_chunks = (n + pad) // chunk

  def chunks(t, fill=0.0):  # [B, H, N, ...] -> [num_chunks, B, H, C, ...]
    t = jnp.pad(t, [(0, 0), (0, 0), (0, pad)] + [(0, 0)] * (t.ndim - 3), constant_values=fill)
    return jnp.moveaxis(t.reshape(b, h, num_chunks, chunk, *t.shape[3:]), 2, 0)

  lower = jnp.tril(jnp.ones((chunk, chunk), bool))

  # Carry: state S and z of the keys before the chunk, in units of exp(-top_prev), top_prev the
  # largest key log-scale so far. Key s reaches query t (s <= t) with weight exp(a_s - top_t).
  def step(carry, xs):
    state, z, top_prev = carry  # [B, H, R, Dh], [B, H, R], [B, H]
    qf_c, kf_c, ka_c, v_c = xs  # [B, H, C, ...]
    top = jnp.maximum(jax.lax.cummax(ka_c, axis=2), top_prev[..., None])  # [B, H, C]
    rel = jnp.where(lower, ka_c[..., None, :] - top[..., :, None], -jnp.inf)  # [B, H, C, C]
    scores = jnp.einsum("bhtr,bhsr->bhts", qf_c, kf_c) * jnp.exp(rel)
    carried = jnp.exp(top_prev[..., None] - top)  # <= 1
    num = (jnp.einsum("bhts,bhsd->bhtd", scores, v_c)
           + jnp.einsum("bhtr,bhrd->bhtd", qf_c, state) * carried[..., None])
    den = jnp.sum(scores, axis=-1) + jnp.einsum("bhtr,bhr->bht", qf_c, z) * carried
    top_end = top[..., -1]
    kw = kf_c * jnp.exp(ka_c - top_end[..., None])[..., None]
    decay = jnp.exp(top_prev - top_end)
    state = state * decay[..., None, None] + jnp.einsum("bhsr,bhsd->bhrd", kw, v_c)
    z = z * decay[..., None] + jnp.sum(kw, axis=2)
    return (state, z, top_end), (num, den)

  init = (jnp.zeros((b, h, r, dh), v.dtype), jnp.zeros((b, h, r), v.dtype),
          jnp.full((b, h), _LOG_FLOOR, v.dtype))
  xs = (chunks(qf), chunks(kf), chunks(jax.lax.stop_gradient(ka), _LOG_FLOOR), chunks(v))
  _, (num, den) = jax.lax.scan(step, init, xs)

  def unchunk(t):  # [num_chunks, B, H, C, ...] -> [B, H, N, ...]
    t = jnp.moveaxis(t, 0, 2)
    return t.reshape(b, h, num_chunks * chunk, *t.shape[4:])[:, :, :n]

  return _divide(unchunk(num), unchunk(den), eps)


def linear_attention(q_feat: jax.Array, k_feat: jax.Array, v: jax.Array,
                     mask: jax.Array | None = None, *, k_log: jax.Array | None = None,
                     causal: bool = False, chunk_size: int = 64, eps: float = 1e-6) -> jax.Array:
  """Normalised linear attention on non-negative features, in time and memory linear in N.

  With key features phi(k_s) = k_feat_s * exp(k_log_s) and query features q_feat_t:

    out_t = sum_s q_t.phi(k_s) v_s / (sum_s q_t.phi(k_s) + eps * exp(M_t))

  over the real keys s (s <= t when ``causal``), M_t the largest k_log_s among them (module
  docstring). With k_log = 0 this is the plain formula with eps. A query log-scale a_t is not
  needed: phi(q_t) = q_feat_t exp(a_t) gives the same result with eps * exp(a_t + M_t), the
  relative eps that the module docstring describes.

  Args:
    q_feat, k_feat: [B, H, N, R] feature values f (non-negative).
    v: [B, H, N, Dh].
    mask: bool[B, N], True at real tokens; padded keys contribute nothing.
    k_log: [B, H, N] key log-scales (None = 0).
    causal: sum over s <= t only (chunked scan of ``chunk_size`` positions).
    eps: the denominator's eps.

  Returns:
    [B, H, N, Dh] in v's dtype (computed in float32).
  """
  if not isinstance(chunk_size, int) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
  dtype = v.dtype
  q_feat, k_feat, v = (t.astype(jnp.float32) for t in (q_feat, k_feat, v))
  k_log = jnp.zeros(k_feat.shape[:-1], jnp.float32) if k_log is None else k_log.astype(jnp.float32)
  if mask is not None:
    valid = mask.astype(bool)[:, None, :]
    k_feat = jnp.where(valid[..., None], k_feat, 0.0)
    v = jnp.where(valid[..., None], v, 0.0)
    k_log = jnp.where(valid, k_log, _LOG_FLOOR)
  if causal:
    out = _causal(q_feat, k_feat, k_log, v, eps, chunk_size)
  else:
    out = _bidirectional(q_feat, k_feat, k_log, v, eps)
  return out.astype(dtype)


def performer_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
                        w: jax.Array, *, kernel: str = "softmax", causal: bool = False,
                        chunk_size: int = 64, eps: float = 1e-6) -> jax.Array:
  """FAVOR+ attention. q, k, v: [B, H, N, Dh]; mask: bool[B, N] or None; w: [Dh, R].

  Returns [B, H, N, Dh] in q's dtype (features and sums in float32).
  """
  qf, _ = random_features(q.astype(jnp.float32), w.astype(jnp.float32), kernel)
  kf, ka = random_features(k.astype(jnp.float32), w.astype(jnp.float32), kernel)
  out = linear_attention(qf, kf, v.astype(jnp.float32), mask, k_log=ka,
                         causal=causal, chunk_size=chunk_size, eps=eps)
  return out.astype(q.dtype)


# ----------------------------------------------------------------------------- modules


def _check_common(chunk_size: int, eps: float) -> None:
  if not isinstance(chunk_size, int) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
  if not eps > 0:
    raise ValueError(f"eps must be positive, got {eps!r}")


@register("linear")
class LinearAttention(ProjectedAttention):
  """Linear attention with elu(x)+1 features (Katharopoulos et al. 2020).

  Args:
    dim, num_heads, rngs, qkv_dim, dropout: as in ``ProjectedAttention``.
    causal: position t attends to positions <= t only.
    chunk_size: chunk length of the causal scan.
    eps: the denominator's eps.
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, causal: bool = False, chunk_size: int = 64,
               eps: float = 1e-6):
    _check_common(chunk_size, eps)
    super().__init__(dim=dim, num_heads=num_heads, rngs=rngs, qkv_dim=qkv_dim, dropout=dropout)
    self.causal = causal
    self.chunk_size = chunk_size
    self.eps = eps

  def attend(self, q, k, v, mask, *, deterministic):
    qf, kf = (elu_features(t.astype(jnp.float32)) for t in (q, k))
    out = linear_attention(qf, kf, v, mask, causal=self.causal, chunk_size=self.chunk_size,
                           eps=self.eps)
    return out.astype(q.dtype)


class RandomProjection(nnx.Variable):
  """A fixed random matrix: saved in ``nnx.state`` (so checkpoints hold it) but not an
  ``nnx.Param``, so an optimizer over ``nnx.Param`` never updates it."""


@register("performer")
class PerformerAttention(ProjectedAttention):
  """Performer attention with FAVOR+ random features (Choromanski et al. 2021).

  Args:
    dim, num_heads, rngs, qkv_dim, dropout: as in ``ProjectedAttention``.
    kernel: ``softmax`` (positive random features) or ``relu`` (module docstring).
    num_features: R, the number of random features (default 256).
    redraw: draw a new orthogonal W on every training call (``deterministic=False``), from
      the ``features`` rng stream (else ``dropout``), and store it; evaluation uses the stored W.
    causal: position t attends to positions <= t only.
    chunk_size: chunk length of the causal scan.
    eps: the denominator's eps.
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, qkv_dim: int | None = None,
               dropout: float = 0.0, kernel: str = "softmax", num_features: int = 256,
               redraw: bool = False, causal: bool = False, chunk_size: int = 64,
               eps: float = 1e-6):
    if kernel not in KERNELS:
      raise ValueError(f"kernel={kernel!r} is unknown; use one of {', '.join(KERNELS)}")
    if not isinstance(num_features, int) or num_features < 1:
      raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
    _check_common(chunk_size, eps)
    super().__init__(dim=dim, num_heads=num_heads, rngs=rngs, qkv_dim=qkv_dim, dropout=dropout)
    self.kernel = kernel
    self.redraw = redraw
    self.causal = causal
    self.chunk_size = chunk_size
    self.eps = eps
    self.projection = RandomProjection(
        orthogonal_random_matrix(rngs.params(), self.head_dim, num_features))
    # The ``features`` stream when the caller provides one, else ``dropout`` (which the
    # projection shell needs anyway; nnx falls back to ``default`` for it).
    stream = "features" if "features" in rngs else "dropout"
    self.redraw_rngs = rngs[stream].fork() if redraw else nnx.data(None)

  def attend(self, q, k, v, mask, *, deterministic):
    w = self.projection[...]
    if self.redraw and not deterministic:
      w = orthogonal_random_matrix(self.redraw_rngs(), *w.shape)
      self.projection[...] = w
    return performer_attention(q, k, v, mask, w, kernel=self.kernel, causal=self.causal,
                               chunk_size=self.chunk_size, eps=self.eps)
