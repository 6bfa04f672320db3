"""Inverted dropout whose masks come from a counter hash instead of JAX's bit generators.

On the CPU, XLA lowers JAX's threefry to a loop that makes several passes over every mask,
Philox bits are still several times dearer than the elementwise op they gate, and XLA
recomputes dropout masks in the backward pass rather than storing them. A counter hash seeded
by two words from the layer's key is one fused elementwise pass. Every dropout in the model
zoo (encoder blocks, embeddings, attention outputs) uses ``Dropout`` from here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _hash_mix(h: jax.Array) -> jax.Array:
  """A 32-bit integer finaliser (xorshift-multiply, C. Wellons' "lowbias32"): every input bit
  flips each output bit with probability close to 1/2."""
  h = (h ^ (h >> 16)) * jnp.uint32(0x7FEB352D)
  h = (h ^ (h >> 15)) * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def dropout_keep_mask(key: jax.Array, shape: tuple[int, ...], keep_prob: float) -> jax.Array:
  """bool[shape], True with probability ``keep_prob`` (to 2^-32), independently per element.

  Two words drawn from ``key`` seed a counter-based hash: element i keeps if
  mix(mix(i ^ w0) + w1) < keep_prob * 2^32. One fused elementwise pass, about 5x cheaper
  than Philox bits on the CPU and far cheaper than threefry's, which matters because XLA
  recomputes dropout masks in the backward pass rather than storing them.
  """
  size = int(np.prod(shape))
  if size >= 2 ** 32:
    raise ValueError(f"dropout over {size} elements needs a wider counter; split the array")
  w0, w1 = jax.random.bits(key, (2,), jnp.uint32)
  bits = _hash_mix(_hash_mix(jax.lax.iota(jnp.uint32, size) ^ w0) + w1).reshape(shape)
  return bits < jnp.uint32(min(int(keep_prob * 2.0 ** 32), 2 ** 32 - 1))


class Dropout(nnx.Module):
  """Inverted dropout like ``nnx.Dropout`` (its own fork of the ``dropout`` stream, one key
  per call), with masks from ``dropout_keep_mask``."""

  def __init__(self, rate: float, *, rngs: nnx.Rngs):
    if not 0.0 <= rate <= 1.0:
      raise ValueError(f"dropout rate must be in [0, 1]; got {rate}")
    self.rate = rate
    self.rngs = rngs["dropout"].fork()

  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    if self.rate == 1.0:
      return jnp.zeros_like(x)
    keep_prob = 1.0 - self.rate
    keep = dropout_keep_mask(self.rngs(), x.shape, keep_prob)
    return jnp.where(keep, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros((), x.dtype))
