"""Wavelet transforms, independent of attention.

- ``filters``: filter banks by name (PyWavelets), quadrature-mirror relations, orthogonal lattice.
- ``dwt``: ``dwt``/``idwt``/``wavedec``/``waverec`` along one axis in JAX with PyWavelets'
  semantics (every discrete wavelet and boundary mode), plus band-support masks.
- ``learnable``: the fixed and learnable transforms of WavSpA (adaptive, orthogonal lattice,
  lifting) as NNX modules on [B, N, D] sequences.

The package exports the PyWavelets-style API, so ``from lra_wavelet.wavelets import wavedec,
waverec`` works; the single-level ``dwt``/``idwt`` stay in the ``dwt`` module (the name
``lra_wavelet.wavelets.dwt`` is that module).
"""

from lra_wavelet.wavelets import dwt, filters
from lra_wavelet.wavelets.dwt import (MODES, dwt_coeff_len, dwt_max_level, idwt_len, wavedec,
                                      wavedec_lengths, wavedec_support, waverec)
from lra_wavelet.wavelets.filters import FilterBank, filter_bank

__all__ = ["MODES", "FilterBank", "dwt", "dwt_coeff_len", "dwt_max_level", "filter_bank", "filters",
           "idwt_len", "wavedec", "wavedec_lengths", "wavedec_support", "waverec"]
