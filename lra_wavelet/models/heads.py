"""Task heads on top of the encoder, one per task kind (``TaskSpec.kind``).

* ``single``: pooled vector -> MLP -> class logits (LRA classifier head).
* ``pair``: a shared encoder on both sequences; interaction [u, v, u*v, u-v] -> MLP -> logits
  (the LRA Retrieval dual encoder).
* ``token``: per-position logits (LEGO), [B, L, C] aligned with the input tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet.models.encoder import Encoder, EncoderOptions


class MlpHead(nnx.Module):
  """Dense(in -> hidden) -> GELU -> Dense(hidden -> classes)."""

  def __init__(self, dim_in: int, hidden: int, num_classes: int, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(dim_in, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(nnx.gelu(self.fc1(x)))


class Classifier(nnx.Module):
  """Encoder + head for ``kind`` in {single, pair, token}.

  __call__(inputs int32[B, L], inputs2 int32[B, L] | None) -> logits f32[B, C] ([B, L, C] for token).
  """

  def __init__(self, opts: EncoderOptions, *, num_classes: int, kind: str, classifier_dim: int,
               rngs: nnx.Rngs):
    self.kind = kind
    self.encoder = Encoder(opts, rngs=rngs)
    dim_in = opts.dim * (4 if kind == "pair" else 1)
    self.head = MlpHead(dim_in, classifier_dim or opts.mlp_dim, num_classes, rngs)

  def __call__(self, inputs: jax.Array, inputs2: jax.Array | None = None, *,
               deterministic: bool = True) -> jax.Array:
    seq, _, pooled = self.encoder(inputs, deterministic=deterministic)
    if self.kind == "token":
      offset = seq.shape[1] - inputs.shape[1]  # skip the CLS position
      return self.head(seq[:, offset:])
    if self.kind == "pair":
      if inputs2 is None:
        raise ValueError("a pair task needs inputs2")
      _, _, v = self.encoder(inputs2, deterministic=deterministic)
      pooled = jnp.concatenate([pooled, v, pooled * v, pooled - v], axis=-1)
    return self.head(pooled)
