"""Registry of token mixers.

Every mixer is an NNX module with the call signature

    mixer(x: f32[B, N, D], mask: bool[B, N], *, deterministic: bool) -> f32[B, N, D]

where ``mask`` is True at real tokens and False at padding. A mixer file registers its
class with ``@register("name")`` and adds one line to ``MIXER_MODULES``; ``build(name, dim=..., num_heads=..., rngs=..., **options)``
constructs one. Unknown names and unknown options fail with the list of valid ones.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from flax import nnx

_REGISTRY: dict[str, type] = {}

# The registry lines: mixer name -> module of this package that defines it. Modules are
# imported on first use, so importing the registry stays cheap and one mixer's import cost
# (or breakage) never reaches the others.
MIXER_MODULES = {
    "softmax": "softmax",
    "linear": "linear",
    "performer": "linear",
    "linformer": "linformer",
    "local": "local",
    "fnet": "fourier",
    "fourier_attention": "fourier",
    "mra": "mra",
    "mra_sparse": "mra",
    "wersa": "wersa",
    "wavspa": "wavspa",
}


def register(name: str) -> Callable[[type], type]:
  """Class decorator: make ``cls`` available as mixer ``name``."""

  def wrap(cls: type) -> type:
    if name in _REGISTRY and _REGISTRY[name] is not cls:
      raise ValueError(f"mixer {name!r} is registered twice ({_REGISTRY[name]} and {cls})")
    _REGISTRY[name] = cls
    return cls

  return wrap


def _import(module: str) -> bool:
  """Import mixer module ``module``; False if its file does not exist."""
  try:
    importlib.import_module(f"{__name__}.{module}")
    return True
  except ModuleNotFoundError as e:
    if e.name != f"{__name__}.{module}":
      raise  # a real missing dependency inside the module
    return False


def names() -> list[str]:
  """Sorted names of every mixer whose module is present."""
  for module in sorted(set(MIXER_MODULES.values())):
    _import(module)
  return sorted(_REGISTRY)


def get(name: str) -> type:
  if name not in _REGISTRY and name in MIXER_MODULES:
    _import(MIXER_MODULES[name])
  if name not in _REGISTRY:
    raise ValueError(f"unknown mixer {name!r}; valid mixers: {', '.join(sorted(MIXER_MODULES))}")
  return _REGISTRY[name]


def build(name: str, *, dim: int, num_heads: int, rngs: nnx.Rngs, **options: Any) -> nnx.Module:
  """Construct mixer ``name`` for model width ``dim`` with ``num_heads`` heads.

  ``options`` are the mixer's own keyword arguments (e.g. ``block_per_row`` for MRA); an
  option the mixer does not take is an error that lists the ones it does.
  """
  cls = get(name)
  params = inspect.signature(cls.__init__).parameters
  accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
  if not accepts_any:
    valid = sorted(k for k in params if k not in ("self", "dim", "num_heads", "rngs"))
    unknown = sorted(set(options) - set(valid))
    if unknown:
      raise ValueError(
          f"mixer {name!r} has no option(s) {', '.join(unknown)}; valid options: "
          f"{', '.join(valid) or '(none)'}")
  return cls(dim=dim, num_heads=num_heads, rngs=rngs, **options)
