"""Config helpers shared by every ``configs/<task>.py``.

A config file defines ``get_config(arg)`` where ``arg`` is a ``key=value,key=value`` string
(big_vision style). ``parse_arg`` turns it into typed values, rejecting unknown keys with the
list of valid ones; ``base_config`` holds every field the trainer reads, each with a default
and a comment; ``finalize`` applies a model preset and locks the config so a misspelled
``--config.<field>`` override fails at once.
"""

from __future__ import annotations

from typing import Any, Mapping

import ml_collections

SCALES = ("tiny", "small", "paper")


class ConfigError(ValueError):
  """A config argument, preset or override the user gave is not valid; says the valid ones."""


def parse_like(text: str, like: Any) -> Any:
  """``text`` converted to the type of ``like`` (bool, int, float or str), as config arguments are."""
  if isinstance(like, bool):
    if text.lower() in ("1", "true", "yes", ""):
      return True
    if text.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"expected a boolean, got {text!r}")
  if isinstance(like, int):
    return int(text)
  if isinstance(like, float):
    return float(text)
  return text


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parse ``"model=transformer,scale=tiny"`` against ``defaults`` (which fixes keys and types).

  A bare ``flag`` means ``flag=True``. Unknown keys raise ValueError naming the valid keys.
  """
  values = dict(defaults)
  for item in filter(None, (s.strip() for s in (arg or "").split(","))):
    key, _, text = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(
          f"unknown config argument {key!r} in {arg!r}; valid arguments: {', '.join(sorted(defaults))}")
    try:
      values[key] = parse_like(text.strip() if "=" in item else "true", defaults[key])
    except ValueError as e:
      raise ConfigError(f"config argument {key}={text!r}: {e}") from None
  if "scale" in values and values["scale"] not in SCALES:
    raise ConfigError(f"unknown scale {values['scale']!r}; valid scales: {', '.join(SCALES)}")
  return ml_collections.ConfigDict(values)


def base_config() -> ml_collections.ConfigDict:
  """Every field the trainer reads, with its default. Task files change values, never add keys
  the trainer does not know (task-specific data fields live under ``config.data``)."""
  c = ml_collections.ConfigDict()
  c.task = ""                 # task module name in lra_wavelet/tasks/
  c.model_preset = ""         # the preset name given as model=...
  c.scale = "tiny"            # tiny | small | paper
  c.seed = 0                  # model init, dropout and data order
  c.data_dir = ""             # folder with the task's official files; "" = generate / download into cache_dir
  c.cache_dir = ""            # where generated data and tokenised arrays go; "" = $LRA_WAVELET_CACHE or ~/.cache/lra_wavelet
  c.max_len = 512             # tokens per example (longer inputs are truncated, with a log line)
  c.data = ml_collections.ConfigDict()  # task-specific data options (generator sizes, resolution, ...)

  m = c.model = ml_collections.ConfigDict()
  m.mixer = "softmax"         # registry name in lra_wavelet/attention/
  m.mixer_options = ml_collections.ConfigDict()  # keyword options of the mixer
  m.num_layers = 2            # transformer blocks
  m.dim = 64                  # embedding width D
  m.num_heads = 4             # attention heads
  m.qkv_dim = 64              # total q/k/v width (Dh = qkv_dim / num_heads)
  m.mlp_dim = 128             # hidden width of the GELU MLP
  m.dropout = 0.1             # dropout after embeddings, mixer and MLP
  m.attention_dropout = 0.1   # dropout on the mixer's attention output (before its output projection)
  m.pos_embedding = "learned"  # learned | sinusoidal | sinusoidal_2d (image tasks: row + column codes) | none
  m.pooling = "cls"           # cls | mean
  m.compute_dtype = "float32"  # float32 | bfloat16 (parameters stay float32)
  m.remat = False             # rematerialise each block in the backward pass (long sequences)
  m.classifier_dim = 0        # hidden width of the classifier MLP (0 = mlp_dim)

  c.batch_size = 32           # global batch (split over all devices)
  c.num_train_steps = 1000
  c.learning_rate = 1e-3      # peak learning rate (for rsqrt: the constant factor, as in LRA)
  c.schedule = "cosine"       # rsqrt (constant*linear_warmup*rsqrt_decay) | cosine (warmup+cosine) | constant
  c.warmup_steps = 100
  c.weight_decay = 0.01       # AdamW decoupled weight decay
  c.b1 = 0.9
  c.b2 = 0.98
  c.eps = 1e-9
  c.grad_clip_norm = 1.0      # global-norm clipping; 0 disables
  c.label_smoothing = 0.0

  c.log_every = 50            # steps between metric logs (the only host syncs in training)
  c.eval_every = 200          # steps between validation runs (and best-checkpoint updates)
  c.checkpoint_every = 200    # steps between resumable checkpoints
  c.eval_batch_size = 0       # 0 = batch_size
  c.max_eval_batches = 0      # 0 = the whole split
  c.prefetch = 4              # batches the input pipeline prepares ahead of the device
  c.mesh_data_axis = -1       # devices on the data-parallel axis; -1 = all
  return c


def add_tfds_fields(config: ml_collections.ConfigDict) -> None:
  """The ``config.data`` fields of a task read from TensorFlow Datasets (Text, Image)."""
  config.data.tfds_data_dir = ""    # folder with a prepared TFDS copy; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  config.data.tfds_download = True  # let TFDS download and prepare the dataset there when it is missing


def add_pixel_fields(config: ml_collections.ConfigDict, height: int, width: int) -> None:
  """One token per pixel of a ``height x width`` image: max_len, ``data.image_shape`` (read by
  2-D aware presets such as MRA's patch blocks) and mean pooling (no CLS token in the grid)."""
  config.max_len = height * width
  config.data.image_shape = (height, width)  # (H, W) of the pixel grid; max_len = H * W
  config.model.pooling = "mean"


def apply_document_scale(config: ml_collections.ConfigDict, scale: str) -> None:
  """The tiny and small settings shared by the byte-level document tasks (Text, Retrieval):
  length, model and schedule. Their paper scales differ and stay in each config file."""
  if scale == "tiny":
    config.max_len = 256
    config.model.update(num_layers=2, dim=64, num_heads=4, qkv_dim=64, mlp_dim=128, dropout=0.0,
                        attention_dropout=0.0)
    config.update(batch_size=32, num_train_steps=1000, learning_rate=1e-3, schedule="cosine",
                  warmup_steps=100, weight_decay=0.01, log_every=50, eval_every=250,
                  checkpoint_every=250, max_eval_batches=20)
  elif scale == "small":
    config.max_len = 1000
    config.model.update(num_layers=4, dim=128, num_heads=4, qkv_dim=128, mlp_dim=256, dropout=0.1,
                        attention_dropout=0.1)
    config.update(batch_size=32, num_train_steps=10_000, learning_rate=5e-4, schedule="cosine",
                  warmup_steps=500, weight_decay=0.01, log_every=100, eval_every=1000,
                  checkpoint_every=1000)
  else:
    raise ValueError(f"apply_document_scale covers tiny and small, not {scale!r}")


def finalize(config: ml_collections.ConfigDict, args: ml_collections.ConfigDict,
             presets: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """Apply the model preset named by ``args.model`` and lock the config.

  ``presets`` defaults to every preset in ``lra_wavelet.presets``.
  """
  if presets is None:
    from lra_wavelet.presets import PRESETS as presets  # pylint: disable=import-outside-toplevel
  if args.model not in presets:
    raise ConfigError(
        f"unknown model preset {args.model!r}; valid presets: {', '.join(sorted(presets))}")
  config.model_preset = args.model
  config.scale = args.scale
  presets[args.model](config, args)
  config.lock()
  return config


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Load ``path/to/config.py[:arg]`` by calling the file's ``get_config(arg)``."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  from pathlib import Path  # pylint: disable=import-outside-toplevel
  path, _, arg = spec.partition(":")
  if not Path(path).is_file():
    raise ConfigError(f"config file {path!r} not found (run from the repository root, or give its full path)")
  module_spec = importlib.util.spec_from_file_location("_lra_wavelet_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and len(value):
      keys.extend(flat_keys(value, f"{prefix}{key}."))
    else:
      keys.append(f"{prefix}{key}")
  return keys


def check_overrides(config: ml_collections.ConfigDict, names: list[str]) -> None:
  """Every ``--config.<name>`` override must name an existing field; else list the valid ones."""
  valid = flat_keys(config)
  for name in names:
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    node: object = config
    for part in name.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        siblings = [k[len(parent) + 1:] if parent else k for k in valid if k.startswith(parent + ".")] \
            if parent else valid
        raise ConfigError(f"unknown config field {name!r}; valid fields"
                          f"{' of ' + parent if parent else ''}: {', '.join(siblings or valid)}")
      node = node[part]
