"""The LRA Transformer encoder with a pluggable token mixer (Tay et al. 2021 layout).

embed (token + learned/sinusoidal position) -> N x pre-LN block (mixer, GELU MLP, dropout)
-> final LayerNorm -> pooled vector (CLS token or padding-aware mean). The mixer is any entry
of ``lra_wavelet.attention``'s registry, so WavSpA, MRA, WERSA and the baselines all run in
the same encoder.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lra_wavelet import attention

POOLINGS = ("cls", "mean")
POS_EMBEDDINGS = ("learned", "sinusoidal", "none")


@dataclasses.dataclass(frozen=True)
class EncoderOptions:
  """Shape and regularisation of the encoder; mirrors ``config.model`` (configlib)."""
  vocab_size: int
  max_len: int
  num_layers: int = 2
  dim: int = 64
  num_heads: int = 4
  qkv_dim: int = 64
  mlp_dim: int = 128
  dropout: float = 0.1
  attention_dropout: float = 0.1
  pos_embedding: str = "learned"
  pooling: str = "cls"
  mixer: str = "softmax"
  mixer_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  remat: bool = False

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
    if self.pos_embedding not in POS_EMBEDDINGS:
      raise ValueError(f"unknown pos_embedding {self.pos_embedding!r}; valid: {', '.join(POS_EMBEDDINGS)}")

  @property
  def seq_len(self) -> int:
    """Tokens inside the encoder: the input length plus the CLS token when pooling is 'cls'."""
    return self.max_len + (1 if self.pooling == "cls" else 0)


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
  """Fixed sin/cos position table [length, dim] (Vaswani et al. 2017)."""
  pos = np.arange(length)[:, None]
  freq = np.exp(-np.log(10_000.0) * np.arange(0, dim, 2) / dim)[None]
  table = np.zeros((length, dim), np.float32)
  table[:, 0::2] = np.sin(pos * freq)
  table[:, 1::2] = np.cos(pos * freq)[:, : dim // 2]
  return table


def build_mixer(opts: EncoderOptions, rngs: nnx.Rngs) -> nnx.Module:
  """The block's token mixer; ``attention_dropout`` is passed to mixers that take ``dropout``."""
  options = dict(opts.mixer_options)
  cls = attention.get(opts.mixer)
  if "dropout" in inspect.signature(cls.__init__).parameters and "dropout" not in options:
    options["dropout"] = opts.attention_dropout
  if "qkv_dim" in inspect.signature(cls.__init__).parameters and "qkv_dim" not in options:
    options["qkv_dim"] = opts.qkv_dim
  return attention.build(opts.mixer, dim=opts.dim, num_heads=opts.num_heads, rngs=rngs, **options)


class MlpBlock(nnx.Module):
  """Dense(D -> mlp_dim) -> GELU -> dropout -> Dense(mlp_dim -> D)."""

  def __init__(self, dim: int, hidden: int, dropout: float, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(dim, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    return self.fc2(self.dropout(nnx.gelu(self.fc1(x)), deterministic=deterministic))


class EncoderBlock(nnx.Module):
  """Pre-LN residual block: x + mixer(LN(x)), then x + MLP(LN(x)); x: [B, N, D]."""

  def __init__(self, opts: EncoderOptions, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(opts.dim, rngs=rngs)
    self.mixer = build_mixer(opts, rngs)
    self.norm2 = nnx.LayerNorm(opts.dim, rngs=rngs)
    self.mlp = MlpBlock(opts.dim, opts.mlp_dim, opts.dropout, rngs)
    self.dropout = nnx.Dropout(opts.dropout, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array, *, deterministic: bool) -> jax.Array:
    keep = mask[..., None].astype(x.dtype)
    h = self.mixer(self.norm1(x) * keep, mask, deterministic=deterministic)
    x = x + self.dropout(h, deterministic=deterministic)
    h = self.mlp(self.norm2(x), deterministic=deterministic)
    return x + self.dropout(h, deterministic=deterministic)


class Encoder(nnx.Module):
  """tokens int32[B, L] (0 = padding) -> (sequence f32[B, N, D], mask bool[B, N], pooled f32[B, D]).

  N = L + 1 with CLS pooling (a learned CLS vector is prepended), else N = L.
  """

  def __init__(self, opts: EncoderOptions, *, rngs: nnx.Rngs):
    self.opts = opts
    self.embed = nnx.Embed(opts.vocab_size, opts.dim, rngs=rngs)
    if opts.pos_embedding == "learned":
      self.pos = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (opts.seq_len, opts.dim)))
    elif opts.pos_embedding == "sinusoidal":
      self.pos = nnx.Variable(jnp.asarray(sinusoidal_positions(opts.seq_len, opts.dim)))
    else:
      self.pos = None
    if opts.pooling == "cls":
      self.cls = nnx.Param(jnp.zeros((1, 1, opts.dim)))
    self.dropout = nnx.Dropout(opts.dropout, rngs=rngs)
    self.blocks = nnx.List([EncoderBlock(opts, rngs) for _ in range(opts.num_layers)])
    self.norm = nnx.LayerNorm(opts.dim, rngs=rngs)

  def __call__(self, tokens: jax.Array, *, deterministic: bool = True):
    if tokens.shape[1] > self.opts.max_len:
      raise ValueError(f"input length {tokens.shape[1]} exceeds the model's max_len {self.opts.max_len}")
    mask = tokens != 0
    x = self.embed(tokens)
    if self.opts.pooling == "cls":
      cls = jnp.broadcast_to(self.cls.value.astype(x.dtype), (x.shape[0], 1, x.shape[2]))
      x = jnp.concatenate([cls, x], axis=1)
      mask = jnp.concatenate([jnp.ones((x.shape[0], 1), bool), mask], axis=1)
    if self.pos is not None:
      x = x + self.pos.value[: x.shape[1]].astype(x.dtype)
    x = self.dropout(x, deterministic=deterministic) * mask[..., None].astype(x.dtype)
    for block in self.blocks:
      if self.opts.remat:
        x = nnx.remat(lambda blk, y, m: blk(y, m, deterministic=deterministic))(block, x, mask)
      else:
        x = block(x, mask, deterministic=deterministic)
    x = self.norm(x)
    if self.opts.pooling == "cls":
      pooled = x[:, 0]
    else:
      w = mask[..., None].astype(x.dtype)
      pooled = (x * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1.0)
    return x, mask, pooled
