"""Optimiser and learning-rate schedules used by the LRA papers (optax).

* ``rsqrt``: LRA's ``constant * linear_warmup * rsqrt_decay``:
  lr(s) = base * min(1, s / warmup) / sqrt(max(s, warmup)).
* ``cosine``: linear warmup to ``base`` then cosine decay to 0 (WavSpA Image/Pathfinder).
* ``constant``: linear warmup to ``base`` then constant.
AdamW with decoupled weight decay and global-norm gradient clipping.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

SCHEDULES = ("rsqrt", "cosine", "constant")


def learning_rate_schedule(name: str, base: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  if name not in SCHEDULES:
    raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")
  warmup = max(int(warmup_steps), 1)
  if name == "rsqrt":
    def rsqrt(step):
      step = jnp.asarray(step, jnp.float32)
      return base * jnp.minimum(1.0, step / warmup) / jnp.sqrt(jnp.maximum(step, warmup))
    return rsqrt
  ramp = optax.linear_schedule(0.0, base, warmup)
  if name == "constant":
    rest = optax.constant_schedule(base)
  else:
    rest = optax.cosine_decay_schedule(base, max(total_steps - warmup, 1))
  return optax.join_schedules([ramp, rest], [warmup])


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  schedule = learning_rate_schedule(config.schedule, config.learning_rate, config.warmup_steps,
                                    config.num_train_steps)
  parts = []
  if config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  parts.append(optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                           weight_decay=config.weight_decay))
  return optax.chain(*parts), schedule
