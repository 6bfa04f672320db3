"""lra_wavelet: a Long Range Arena harness for wavelet-space, multi-resolution and
random-spectral attention in JAX/Flax NNX.

Subpackages: attention (token mixers, looked up by name), wavelets (transforms),
models (encoder and heads), tasks (LRA tasks and LEGO), train (loop, optimiser,
checkpoints), bench (benchmark commands).
"""

__version__ = "0.1.0"
