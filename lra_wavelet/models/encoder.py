"""The LRA Transformer encoder with a pluggable token mixer (Tay et al. 2021 layout).

embed (token + learned, sinusoidal or 2-D sinusoidal position) -> N x pre-LN block (mixer,
GELU MLP, dropout) -> final LayerNorm -> pooled vector (CLS token or padding-aware mean).
The mixer is any entry of ``lra_wavelet.attention``'s registry, so WavSpA, MRA, WERSA and the
baselines all run in the same encoder. Dropout masks come from a counter hash
(``lra_wavelet.dropout``, cheap on the CPU) and ``remat`` recomputes each block in the
backward pass (``recompute_in_backward``) to bound activation memory.
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
from lra_wavelet.dropout import Dropout

POOLINGS = ("cls", "mean")
POS_EMBEDDINGS = ("learned", "sinusoidal", "sinusoidal_2d", "none")


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
  image_shape: tuple[int, int] | None = None  # (H, W) of a pixel grid in row-major token order

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
    if self.pos_embedding not in POS_EMBEDDINGS:
      raise ValueError(f"unknown pos_embedding {self.pos_embedding!r}; valid: {', '.join(POS_EMBEDDINGS)}")
    if self.pos_embedding == "sinusoidal_2d":
      if self.image_shape is None or int(np.prod(self.image_shape)) != self.max_len:
        raise ValueError(f"pos_embedding='sinusoidal_2d' needs an image task (data.image_shape with H*W = "
                         f"max_len {self.max_len}); got image_shape {self.image_shape}. Use 'sinusoidal' or "
                         "'learned' for sequence tasks")
      if self.dim % 4:
        raise ValueError(f"pos_embedding='sinusoidal_2d' needs model.dim divisible by 4; got {self.dim}")

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


def sinusoidal_positions_2d(height: int, width: int, dim: int) -> np.ndarray:
  """Fixed 2-D sin/cos table [height * width, dim] in row-major pixel order: the first half of
  the channels encodes the row and the second half the column (each a 1-D table of dim / 2),
  so a dot product between two pixels' codes depends on their row and column offsets, as in
  ViT's 2-D sincos variant (Dosovitskiy et al. 2021)."""
  half = dim // 2
  rows = sinusoidal_positions(height, half)[:, None, :]
  cols = sinusoidal_positions(width, half)[None, :, :]
  grid = np.concatenate([np.broadcast_to(rows, (height, width, half)),
                         np.broadcast_to(cols, (height, width, half))], axis=-1)
  return np.ascontiguousarray(grid.reshape(height * width, dim), dtype=np.float32)


def position_table(opts: EncoderOptions) -> np.ndarray:
  """The fixed table [seq_len, D] of a sinusoidal option; a CLS token in front gets zeros."""
  if opts.pos_embedding == "sinusoidal":
    return sinusoidal_positions(opts.seq_len, opts.dim)
  table = sinusoidal_positions_2d(*opts.image_shape, opts.dim)
  pad = opts.seq_len - table.shape[0]
  return np.concatenate([np.zeros((pad, opts.dim), np.float32), table]) if pad else table


def build_mixer(opts: EncoderOptions, rngs: nnx.Rngs) -> nnx.Module:
  """The block's token mixer; ``attention_dropout`` is passed to mixers that take ``dropout``."""
  options = dict(opts.mixer_options)
  cls = attention.get(opts.mixer)
  if "dropout" in inspect.signature(cls.__init__).parameters and "dropout" not in options:
    options["dropout"] = opts.attention_dropout
  if "qkv_dim" in inspect.signature(cls.__init__).parameters and "qkv_dim" not in options:
    options["qkv_dim"] = opts.qkv_dim
  return attention.build(opts.mixer, dim=opts.dim, num_heads=opts.num_heads, rngs=rngs, **options)


def recompute_in_backward(fn):
  """``fn`` under reverse-mode autodiff saves only its inputs and recomputes the rest when the
  output's cotangent arrives (gradient checkpointing, Chen et al. 2016, like ``jax.checkpoint``).

  ``jax.checkpoint`` ties its recomputation to nothing but the saved inputs, and XLA:CPU
  (jax 0.10) schedules it right after the forward pass: every block's activations stay alive
  and peak memory is unchanged (measured; tests/test_bench_train.py). Here the recomputation
  and the backward pass run inside a ``lax.cond`` whose predicate reads the cotangent, so XLA
  can neither merge them with the forward pass nor start them before the cotangent exists. The other branch, taken only when that cotangent
  entry is NaN, returns NaN gradients (a NaN there makes every gradient NaN anyway).

  ``fn(*args)`` returns a pytree whose first leaf is a floating array; integer inputs and
  outputs (RNG counters, masks) are allowed and get zero (float0) cotangents.
  """

  @jax.custom_vjp
  def wrapped(*args):
    return fn(*args)

  def fwd(*args):
    # Save a fresh copy of the inputs' structure: ``fn`` may update variables inside ``args``
    # in place (an NNX RNG counter), and the recomputation must see their values before it.
    leaves, treedef = jax.tree.flatten(args)
    return fn(*args), jax.tree.unflatten(treedef, leaves)

  def bwd(args, cotangent):
    def recompute(args, cotangent):
      return jax.vjp(fn, *args)[1](cotangent)

    def nan_gradients(args, cotangent):
      grads = jax.eval_shape(recompute, args, cotangent)
      return jax.tree.map(lambda g: jnp.full(g.shape, jnp.nan, g.dtype)
                          if jnp.issubdtype(g.dtype, jnp.inexact) else jnp.zeros(g.shape, g.dtype), grads)

    probe = jax.tree.leaves(cotangent)[0].reshape(-1)[0]
    return jax.lax.cond(jnp.isnan(probe), nan_gradients, recompute, args, cotangent)

  wrapped.defvjp(fwd, bwd)
  return wrapped


def rematerialized_block(block: nnx.Module, x: jax.Array, mask: jax.Array, *,
                         deterministic: bool) -> jax.Array:
  """``block(x, mask)`` keeping only x [B, N, D] for the backward pass (``recompute_in_backward``).

  The block's RNG state goes in and out explicitly, so dropout draws the same masks when the
  block is recomputed and the stream still advances once per call.
  """
  graphdef, params, rest = nnx.split(block, nnx.Param, ...)

  def apply(params, rest, x, mask):
    module = nnx.merge(graphdef, params, rest)
    y = module(x, mask, deterministic=deterministic)
    return y, nnx.split(module, nnx.Param, ...)[2]

  y, rest = recompute_in_backward(apply)(params, rest, x, mask)
  nnx.update(block, rest)
  return y


class MlpBlock(nnx.Module):
  """Dense(D -> mlp_dim) -> GELU -> dropout -> Dense(mlp_dim -> D)."""

  def __init__(self, dim: int, hidden: int, dropout: float, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(dim, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)
    self.dropout = Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    return self.fc2(self.dropout(nnx.gelu(self.fc1(x)), deterministic=deterministic))


class EncoderBlock(nnx.Module):
  """Pre-LN residual block: x + mixer(LN(x)), then x + MLP(LN(x)); x: [B, N, D]."""

  def __init__(self, opts: EncoderOptions, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(opts.dim, rngs=rngs)
    self.mixer = build_mixer(opts, rngs)
    self.norm2 = nnx.LayerNorm(opts.dim, rngs=rngs)
    self.mlp = MlpBlock(opts.dim, opts.mlp_dim, opts.dropout, rngs)
    self.dropout = Dropout(opts.dropout, rngs=rngs)

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
    elif opts.pos_embedding in ("sinusoidal", "sinusoidal_2d"):
      self.pos = nnx.Variable(jnp.asarray(position_table(opts)))
    else:
      self.pos = None
    if opts.pooling == "cls":
      self.cls = nnx.Param(jnp.zeros((1, 1, opts.dim)))
    self.dropout = Dropout(opts.dropout, rngs=rngs)
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
        x = rematerialized_block(block, x, mask, deterministic=deterministic)
      else:
        x = block(x, mask, deterministic=deterministic)
    x = self.norm(x)
    if self.opts.pooling == "cls":
      pooled = x[:, 0]
    else:
      w = mask[..., None].astype(x.dtype)
      pooled = (x * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1.0)
    return x, mask, pooled
