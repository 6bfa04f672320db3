"""WavSpA: attention in wavelet space (Zhuang, Wang, Tao, Shang 2023; REFERENCES.md §1).

The mixer wraps any other mixer ("inner"): zero the padded positions, take a J-level wavelet
transform of the sequence [B, N, D] -> bands [cA_J, cD_J, ..., cD_1] (each [B, n_b, D]), run
the inner mixer on every band separately, transform back and crop to N. Each band has its
own inner mixer with its own parameters (``share_inner=False``, the paper's setting) or all
bands share one (``share_inner=True``). With one level the two bands have about N/2
coefficients each, so a quadratic inner mixer costs about half of what it costs on tokens.

Masks. The paper's code passes no mask in coefficient space; here each band gets the mask
``transform.band_masks(mask)``: a coefficient is a valid key/query iff the support of its
basis function (through the boundary extension and every level) contains at least one real
token. Since padded positions are zeroed before the transform, the outputs at real positions
do not depend on the values at padded positions, whatever the wavelet and mode. The inner
mixer's outputs at invalid coefficients are set to zero before the inverse transform (they
stand for zero content), so with padding at the end, a boundary mode that does not wrap
("zero", or lifting) and enough padding, the outputs at real positions do not depend on the
amount of padding either (tests/test_wavspa.py checks both).

Wavelets (``lra_wavelet.wavelets.learnable``): a fixed PyWavelets name ("db2", the paper's
"fix"; any discrete wavelet), "ada" (AdaWavSpA: learnable per-channel filter initialised to
db(wlen/2)), "ortho" (OrthoWavSpA: orthogonal lattice), "lift" (LiftWavSpA: LeGall 5/3
lifting) or "adalift" (lifting with learned predict/update).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from lra_wavelet import attention
from lra_wavelet.attention import register
from lra_wavelet.wavelets import learnable


@register("wavspa")
class WavSpA(nnx.Module):
  """Wavelet-space attention around an inner mixer.

  Args:
    dim, num_heads, rngs: as for every mixer (passed on to the inner mixers).
    inner: name of the inner mixer (any registered mixer, default "softmax").
    inner_options: keyword options of the inner mixer (e.g. {"qkv_dim": 64}).
    wavelet: PyWavelets name (fixed), "ada", "ortho", "lift" or "adalift".
    wlen: filter length of "ada"/"ortho" (default 16) or window of "adalift" (default 4).
    levels: decomposition levels J (default 1); J+1 bands.
    mode: boundary mode of the filter-bank wavelets (default "periodization"; see
      ``lra_wavelet.wavelets.dwt``); not used by lifting.
    share_inner: one inner mixer for all bands instead of one per band.
  """

  def __init__(self, *, dim: int, num_heads: int, rngs: nnx.Rngs, inner: str = "softmax",
               inner_options: Mapping[str, Any] | None = None, wavelet: str = "db2",
               wlen: int | None = None, levels: int = 1, mode: str | None = None,
               share_inner: bool = False):
    if inner == "wavspa":
      raise ValueError("the inner mixer of wavspa cannot be wavspa; use levels for a deeper transform")
    if inner_options is None:
      inner_options = {}
    elif hasattr(inner_options, "to_dict"):
      inner_options = inner_options.to_dict()
    if not isinstance(inner_options, Mapping):
      raise ValueError(f"inner_options must be a dict of the inner mixer's options; got "
                       f"{type(inner_options).__name__}")
    self.transform = learnable.build_transform(wavelet, dim=dim, wlen=wlen, levels=levels,
                                               mode=mode, rngs=rngs)
    self.levels = levels
    self.share_inner = share_inner
    count = 1 if share_inner else levels + 1
    self.mixers = nnx.List([
        attention.build(inner, dim=dim, num_heads=num_heads, rngs=rngs, **dict(inner_options))
        for _ in range(count)])

  def __call__(self, x: jax.Array, mask: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """x: [B, N, D], mask: bool[B, N] -> [B, N, D]."""
    n = x.shape[1]
    if n < 2 ** self.levels:
      raise ValueError(f"a sequence of length {n} is too short for {self.levels} wavelet levels; "
                       f"use fewer levels")
    mask = mask.astype(bool)
    bands = self.transform.forward(x, mask)
    band_masks = self.transform.band_masks(mask)
    outs = []
    for i, (band, band_mask) in enumerate(zip(bands, band_masks)):
      mixer = self.mixers[0 if self.share_inner else i]
      out = mixer(band, band_mask, deterministic=deterministic).astype(band.dtype)
      # A coefficient that only sees padding stands for zero content: it contributes nothing.
      outs.append(jnp.where(band_mask[..., None], out, jnp.zeros((), out.dtype)))
    y = self.transform.inverse(outs, n)
    return y.astype(x.dtype)
