"""Model presets: one name per row of the papers' tables, usable in every task config.

A preset sets ``config.model.mixer`` and ``config.model.mixer_options``; task-dependent
settings (sequence length for Linformer, MRA's per-task priors, the image shape for 2-D
block layouts) are read from the config the preset is applied to. Names:

* backbones (LRA / WavSpA table rows): ``transformer``, ``longformer``, ``linformer``,
  ``linear``, ``performer``;
* WavSpA rows: ``<backbone>_wavspa_ada``, ``_ortho``, ``_lift``, and ``<backbone>_wavspa`` with
  a fixed wavelet (db2 unless ``wavelet=`` is given in the config argument);
* Fourier comparisons: ``fnet``, ``fourier_attention``;
* MRA (Zeng et al. 2022): ``mra2``, ``mra2_sparse``; WERSA (Dentamaro 2025): ``wersa``.
"""

from __future__ import annotations

from typing import Any, Callable

import ml_collections

# A preset edits the config in place; ``args`` is the parsed config argument (model=...,scale=...).
Preset = Callable[[ml_collections.ConfigDict, ml_collections.ConfigDict], None]

# Learnable wavelet settings from the WavSpA configs (REFERENCES.md §1).
WAVSPA_VARIANTS = {
    "ada": dict(wavelet="ada", wlen=16, levels=1),
    "ortho": dict(wavelet="ortho", wlen=16, levels=1),
    "lift": dict(wavelet="lift", levels=3),
}
DEFAULT_FIXED_WAVELET = "db2"
BACKBONES = ("transformer", "longformer", "linformer", "linear", "performer")
# Tasks whose MRA runs use the diagonal prior (MRA code's LRA settings).
MRA_DIAGONAL_PRIOR_TASKS = ("text", "retrieval")


def sequence_length(config: ml_collections.ConfigDict) -> int:
  """Tokens the mixers see: the task length plus the CLS token when pooling is 'cls'."""
  return config.max_len + (1 if config.model.pooling == "cls" else 0)


def backbone_mixer(backbone: str, config: ml_collections.ConfigDict) -> tuple[str, dict[str, Any]]:
  """(mixer name, options) of a backbone row, for a model on ``config``'s task."""
  if backbone == "transformer":
    return "softmax", {}
  if backbone == "longformer":
    return "local", dict(window=512, num_global=1)
  if backbone == "linformer":
    return "linformer", dict(k=128, max_len=sequence_length(config))
  if backbone == "linear":
    return "linear", {}
  if backbone == "performer":
    return "performer", dict(kernel="relu", num_features=256)
  raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}")


def _set_mixer(config: ml_collections.ConfigDict, mixer: str, options: dict[str, Any]) -> None:
  config.model.mixer = mixer
  config.model.mixer_options = ml_collections.ConfigDict(options)


def _backbone(backbone: str) -> Preset:
  return lambda config, args: _set_mixer(config, *backbone_mixer(backbone, config))


def _wavspa(backbone: str, variant: str | None) -> Preset:
  def apply(config: ml_collections.ConfigDict, args: ml_collections.ConfigDict) -> None:
    inner, inner_options = backbone_mixer(backbone, config)
    if variant is None:
      wavelet = args.get("wavelet") or DEFAULT_FIXED_WAVELET
      options = dict(wavelet=wavelet, levels=1)
    else:
      options = dict(WAVSPA_VARIANTS[variant])
    _set_mixer(config, "wavspa", dict(inner=inner, inner_options=inner_options, **options))
  return apply


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int] | None:
  """The task's (height, width) when tokens are pixels and no CLS token is prepended."""
  shape = config.data.get("image_shape")
  if shape and config.model.pooling == "mean":
    return tuple(shape)
  return None


def _mra(sparse: bool) -> Preset:
  def apply(config: ml_collections.ConfigDict, args: ml_collections.ConfigDict) -> None:
    options: dict[str, Any] = dict(
        block_per_row=8,
        initial_prior_first_n_blocks=1,
        initial_prior_diagonal_n_blocks=1 if config.task in MRA_DIAGONAL_PRIOR_TASKS else 0)
    if image_shape(config):
      options["image_shape"] = image_shape(config)
    _set_mixer(config, "mra_sparse" if sparse else "mra", options)
  return apply


def _fixed(mixer: str, **options: Any) -> Preset:
  return lambda config, args: _set_mixer(config, mixer, dict(options))


def all_presets() -> dict[str, Preset]:
  presets: dict[str, Preset] = {}
  for backbone in BACKBONES:
    presets[backbone] = _backbone(backbone)
    presets[f"{backbone}_wavspa"] = _wavspa(backbone, None)
    for variant in WAVSPA_VARIANTS:
      presets[f"{backbone}_wavspa_{variant}"] = _wavspa(backbone, variant)
  presets["fnet"] = _fixed("fnet")
  presets["fourier_attention"] = _fixed("fourier_attention")
  presets["mra2"] = _mra(sparse=False)
  presets["mra2_sparse"] = _mra(sparse=True)
  presets["wersa"] = _fixed("wersa", decomp_levels=4, random_features=128)
  return presets


PRESETS = all_presets()
