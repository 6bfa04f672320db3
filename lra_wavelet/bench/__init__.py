"""Benchmark commands behind ``lra-wavelet bench``; ``common`` holds what they share."""
