"""Multi-host start-up: ``jax.distributed.initialize`` when several processes run one job.

One training job may span several processes (a multi-host TPU slice, several GPU nodes, or
several processes on one machine): each runs the same ``lra-wavelet train`` command, and
before anything touches a device they join one JAX runtime, so ``jax.devices()`` lists the
devices of every process and the data-parallel mesh spans them all (each process feeds its own
rows of every batch, see ``lra_wavelet/data.py``).

When it happens (``plan``), in this order:

1. explicit settings: ``--coordinator_address`` / ``--num_processes`` / ``--process_id`` (or
   JAX's own ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``) with
   more than one process;
2. ``--multihost``: let JAX detect the cluster (Cloud TPU pod slices, SLURM, Open MPI, k8s);
3. a launcher that started several processes: SLURM (``SLURM_NTASKS`` > 1) or Open MPI
   (``OMPI_COMM_WORLD_SIZE`` > 1), also detected by JAX.

Otherwise (one process, the common case) nothing is initialised.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from absl import logging


class DistributedSetupError(ValueError):
  """The multi-process settings are incomplete or inconsistent; says what to give."""


def _int(value: Any, name: str) -> int | None:
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise DistributedSetupError(f"{name} must be an integer, got {value!r}") from None


def plan(coordinator_address: str | None = None, num_processes: int | None = None,
         process_id: int | None = None, multihost: bool = False,
         environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
  """Keyword arguments for ``jax.distributed.initialize``, or None for a single process.

  An empty dict means "initialise and let JAX detect the cluster".
  """
  address = coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS") or None
  count = num_processes if num_processes is not None else _int(environ.get("JAX_NUM_PROCESSES"), "JAX_NUM_PROCESSES")
  index = process_id if process_id is not None else _int(environ.get("JAX_PROCESS_ID"), "JAX_PROCESS_ID")
  if count is not None and count < 1:
    raise DistributedSetupError(f"--num_processes must be at least 1, got {count}")
  if count is not None and count > 1:
    missing = [name for name, value in (("--coordinator_address", address), ("--process_id", index))
               if value is None]
    if missing:
      raise DistributedSetupError(f"--num_processes={count} needs {' and '.join(missing)} too (the same coordinator "
                       f"host:port in every process, process ids 0..{count - 1})")
    if not 0 <= index < count:
      raise DistributedSetupError(f"--process_id={index} must be in 0..{count - 1} for --num_processes={count}")
    return {"coordinator_address": address, "num_processes": count, "process_id": index}
  if count == 1:
    return None
  if multihost:
    return {}
  if (_int(environ.get("SLURM_NTASKS"), "SLURM_NTASKS") or 1) > 1 or \
     (_int(environ.get("OMPI_COMM_WORLD_SIZE"), "OMPI_COMM_WORLD_SIZE") or 1) > 1:
    return {}
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, multihost: bool = False) -> bool:
  """Join the multi-process JAX runtime when ``plan`` says so; True if it did.

  Must run before anything touches a device (``jax.devices()``, any computation).
  """
  kwargs = plan(coordinator_address, num_processes, process_id, multihost)
  if kwargs is None:
    return False
  import jax  # pylint: disable=import-outside-toplevel
  if jax.distributed.is_initialized():
    return True
  # CPU devices of different processes exchange data through gloo (other platforms ignore it),
  # so a multi-process run also works on CPU-only machines and in tests.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  logging.info("JAX distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True
