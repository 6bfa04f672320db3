"""Wavelet transforms, independent of attention.

- ``filters``: filter banks by name (PyWavelets), quadrature-mirror relations, orthogonal lattice.
- ``dwt``: ``dwt``/``idwt``/``wavedec``/``waverec`` along one axis in JAX with PyWavelets'
  semantics (every discrete wavelet and boundary mode), plus band-support masks.
- ``learnable``: the fixed and learnable transforms of WavSpA (adaptive, orthogonal lattice,
  lifting) as NNX modules on [B, N, D] sequences.
"""
