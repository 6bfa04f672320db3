"""Input pipeline: deterministic, resumable batches from a task's cached arrays (grain).

Training batches are a pure function of (seed, step): every epoch is a permutation of the
examples drawn from (seed, epoch), and batch ``s`` holds positions ``s*B .. (s+1)*B - 1`` of
the endless sequence of epochs, so batch ``s`` can be read directly — resuming at step ``s``
needs no iterator state, and two runs with the same seed see identical batches. A grain
``MapDataset`` over step numbers computes each batch's indices with one vectorised lookup
and gathers its rows; its read threads prepare batches ahead of the training step.
Each process reads only its share of every global batch; ``to_global`` assembles the shares
into one array sharded over the data axis of the device mesh, so the same code runs on one
CPU, several GPUs or a TPU slice.
"""

from __future__ import annotations

import functools
from typing import Iterator

import grain
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int = -1) -> Mesh:
  """A 1-D data-parallel mesh over ``num_devices`` devices (-1 = all)."""
  devices = jax.devices()
  n = len(devices) if num_devices in (-1, 0, None) else num_devices
  if n > len(devices):
    raise ValueError(f"mesh_data_axis={n} but only {len(devices)} devices are available")
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
  """A full copy of ``tree`` on every device of ``mesh``, also across processes.

  ``jax.device_put`` cannot place arrays on another process's devices, so with several
  processes every leaf is assembled from this process's identical host copy (every process
  builds the same seeded state). Typed PRNG keys travel as their raw key data.
  """
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch_size % n or batch_size % jax.process_count():
    raise ValueError(
        f"batch_size={batch_size} must be divisible by the {n} devices of the mesh and the "
        f"{jax.process_count()} processes; choose a multiple of {n}")


def _gather(arrays: dict[str, np.ndarray]):
  def take(indices: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[indices] for k, v in arrays.items()}
  return take


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The example order of one epoch: a permutation drawn from (seed, epoch). Read-only."""
  order = np.random.default_rng((seed, epoch)).permutation(num_examples)
  order.flags.writeable = False
  return order


def batch_indices(step: int, seed: int, batch_size: int, num_examples: int) -> np.ndarray:
  """Example indices int64[batch_size] of global batch ``step`` (it may span two epochs)."""
  epochs, offsets = np.divmod(np.arange(step * batch_size, (step + 1) * batch_size), num_examples)
  indices = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    here = epochs == epoch
    indices[here] = epoch_order(seed, int(epoch), num_examples)[offsets[here]]
  return indices


def train_batches(arrays: dict[str, np.ndarray], *, batch_size: int, seed: int, start_step: int,
                  num_steps: int, prefetch: int = 4) -> Iterator[dict[str, np.ndarray]]:
  """This process's part of global batches ``start_step .. num_steps-1``.

  Batch s holds positions ``s*batch_size .. (s+1)*batch_size - 1`` of the endless sequence of
  epochs, epoch e ordered by ``epoch_order(seed, e)``; the process with index p takes rows
  p::process_count.
  """
  num_examples = len(next(iter(arrays.values())))
  if num_examples < batch_size:
    raise ValueError(f"the training split has {num_examples} examples, fewer than batch_size={batch_size}")
  procs, me = jax.process_count(), jax.process_index()
  ds = grain.MapDataset.range(start_step, max(num_steps, start_step))
  ds = ds.map(lambda step: batch_indices(step, seed, batch_size, num_examples)[me::procs])
  ds = ds.map(_gather(arrays))
  if prefetch > 0:
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=prefetch))
  return iter(ds)


def eval_batches(arrays: dict[str, np.ndarray], *, batch_size: int, max_batches: int = 0
                 ) -> Iterator[dict[str, np.ndarray]]:
  """The split in order, in full batches; the last is padded and carries ``weights`` 0 there.

  Yields this process's rows of each global batch, with ``weights`` f32[b] (1 = real example).
  """
  num_examples = len(next(iter(arrays.values())))
  num_batches = -(-num_examples // batch_size)
  if max_batches:
    num_batches = min(num_batches, max_batches)
  procs, me = jax.process_count(), jax.process_index()
  for b in range(num_batches):
    idx = np.arange(b * batch_size, (b + 1) * batch_size)
    weights = (idx < num_examples).astype(np.float32)
    idx = np.minimum(idx, num_examples - 1)[me::procs]
    batch = {k: v[idx] for k, v in arrays.items()}
    batch["weights"] = weights[me::procs]
    yield batch


def to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assemble each process's rows into global arrays sharded over the mesh's data axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
