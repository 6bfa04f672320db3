"""Token mixing in Fourier space: FNet (Lee-Thorp et al. 2022, "FNet: Mixing Tokens with
Fourier Transforms") and attention on Fourier coefficients, the spectral comparison the WavSpA
paper (Zhuang et al. 2023) claims wavelet space beats.

``fnet``: y = Re(FFT_seq(FFT_hidden(x))), a 2-D DFT over the sequence and feature axes keeping
the real part; no parameters. Padded positions are zeroed first. The DFT mixes all N positions,
so the output at a real position depends on how long the padded sequence is (N sets the
frequencies) but not on what the padded tokens contain.

``fourier_attention``: forward real FFT along the sequence -> an inner attention mixer on the
Fourier coefficients -> inverse real FFT. The mapping, for x [B, N, D] with padded positions
zeroed:

1. c = rfft(x, axis=seq, norm="ortho"): M = N // 2 + 1 complex coefficients per channel (the
   non-negative frequencies; the rest follow by conjugate symmetry). The orthonormal scaling
   keeps the coefficients at the scale of the inputs (Parseval), whatever N.
2. Real and imaginary parts become separate tokens: t = concat([Re c, Im c], axis=seq), a real
   [B, 2M, D] sequence (tokens 0..M-1 the real parts of frequencies 0..M-1, tokens M..2M-1
   their imaginary parts). This keeps the model width D and gives 2M = N + 1 or N + 2 tokens,
   the same budget as WavSpA's wavelet coefficients, so the inner mixer takes exactly the
   backbone's options. Every token counts as real (no padding mask in frequency space).
3. u = inner(t) [B, 2M, D]; back to complex u[:, :M] + i u[:, M:] and y = irfft(., n=N,
   norm="ortho"). The inverse keeps the Hermitian part: the imaginary parts of the DC bin (and
   of the Nyquist bin for even N) are dropped, as numpy's irfft does. With the transform taken
   at the input length N the inverse returns exactly N positions, so nothing needs cropping.

The inner mixer is built with ``lra_wavelet.attention.build`` (default ``softmax``); the
``qkv_dim`` and ``dropout`` options are passed on to it when it takes them.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet import attention
from lra_wavelet.attention import register


def _zero_padding(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  return x if mask is None else jnp.where(mask.astype(bool)[..., None], x, 0)


def fnet_mixing(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Re(FFT over the sequence of FFT over the features). x: [B, N, D]; mask: bool[B, N].

  Returns [B, N, D] in x's dtype (the FFT runs in float32).
  """
  y = jnp.fft.fft2(_zero_padding(x, mask).astype(jnp.float32), axes=(-2, -1)).real
  return y.astype(x.dtype)


def to_fourier_tokens(x: jax.Array) -> jax.Array:
  """[B, N, D] -> [B, 2M, D], M = N // 2 + 1: [Re rfft, Im rfft] along the sequence (ortho)."""
  c = jnp.fft.rfft(x.astype(jnp.float32), axis=1, norm="ortho")
  return jnp.concatenate([c.real, c.imag], axis=1)


def from_fourier_tokens(t: jax.Array, n: int) -> jax.Array:
  """Inverse of ``to_fourier_tokens``: [B, 2M, D] -> float32[B, n, D] (M = n // 2 + 1)."""
  m = n // 2 + 1
  if t.shape[1] != 2 * m:
    raise ValueError(f"expected {2 * m} Fourier tokens for length {n}, got {t.shape[1]}")
  t = t.astype(jnp.float32)
  return jnp.fft.irfft(jax.lax.complex(t[:, :m], t[:, m:]), n=n, axis=1, norm="ortho")


def fourier_attention(x: jax.Array, mask: jax.Array | None,
                      inner: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
  """Attention in Fourier space (module docstring).

  Args:
    x: [B, N, D]; mask: bool[B, N] (True = real token) or None.
    inner: a mixer on the Fourier tokens, ([B, 2M, D], bool[B, 2M]) -> [B, 2M, D].

  Returns:
    [B, N, D] in x's dtype.
  """
  n = x.shape[1]
  tokens = to_fourier_tokens(_zero_padding(x, mask)).astype(x.dtype)
  mixed = inner(tokens, jnp.ones(tokens.shape[:2], bool))
  return from_fourier_tokens(mixed, n).astype(x.dtype)


@register("fnet")
class FNetMixing(nnx.Module):
  """FNet token mixing: y = Re(FFT_seq(FFT_hidden(x))); no parameters and no options."""

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs):
    del dim, num_heads, rngs  # the mixing has no parameters

  def __call__(self, x: jax.Array, mask: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """x: [B, N, D]; mask: bool[B, N] -> [B, N, D]."""
    return fnet_mixing(x, mask)


@register("fourier_attention")
class FourierAttention(nnx.Module):
  """Attention on Fourier coefficients: rfft -> inner mixer -> irfft (module docstring).

  Args:
    dim, num_heads, rngs: as for every mixer; the inner mixer gets the same width and heads.
    inner: registry name of the mixer run on the Fourier tokens (default ``softmax``).
    inner_options: that mixer's own options.
    qkv_dim, dropout: passed to the inner mixer when it takes them and ``inner_options`` does
      not set them.
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, inner: str = "softmax",
               inner_options: dict[str, Any] | None = None, qkv_dim: int | None = None,
               dropout: float = 0.0):
    options = {} if inner_options is None else dict(inner_options)
    accepted = inspect.signature(attention.get(inner).__init__).parameters
    for name, value in (("qkv_dim", qkv_dim), ("dropout", dropout)):
      if name in accepted and name not in options:
        options[name] = value
    self.inner = attention.build(inner, dim=dim, num_heads=num_heads, rngs=rngs, **options)

  def __call__(self, x: jax.Array, mask: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """x: [B, N, D]; mask: bool[B, N] -> [B, N, D]."""
    return fourier_attention(
        x, mask, lambda t, m: self.inner(t, m, deterministic=deterministic))
