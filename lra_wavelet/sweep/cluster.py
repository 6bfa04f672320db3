"""Ray connection and per-trial resources, shared by sweeps and by ``reproduce`` on a cluster.

* ``connect(address)``: "" or "local" starts a Ray instance on this machine; anything else
  ("auto", "ray://head:10001", "head:6379") joins an existing cluster.
* ``trial_resources()``: what one training run asks for — one GPU when the cluster has GPUs;
  on TPU VMs every TPU chip of one host (a JAX process owns all chips of its host, so two runs
  cannot share a host); else ``cpus`` CPU cores.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from lra_wavelet import allocator

LOCAL = ("", "local")


def connect(address: str = "", **init_kwargs: Any) -> None:
  """Start or join Ray (once per process). Extra keyword arguments go to ``ray.init``."""
  import ray  # pylint: disable=import-outside-toplevel
  if ray.is_initialized():
    return
  os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
  allocator_env = allocator.child_environment()
  if allocator_env:  # trial processes get the binary's allocator options from their start
    runtime_env = dict(init_kwargs.pop("runtime_env", None) or {})
    runtime_env["env_vars"] = {**allocator_env, **runtime_env.get("env_vars", {})}
    init_kwargs["runtime_env"] = runtime_env
  if address in LOCAL:
    ray.init(include_dashboard=False, **init_kwargs)
  else:
    ray.init(address=address, **init_kwargs)


@dataclasses.dataclass(frozen=True)
class TrialResources:
  """Resources of one trial: CPU cores, GPUs, TPU chips."""
  cpu: float = 1
  gpu: float = 0
  tpu: float = 0

  def tune(self) -> dict[str, float]:
    """The form ``tune.with_resources`` takes."""
    res = {"cpu": self.cpu}
    if self.gpu:
      res["gpu"] = self.gpu
    if self.tpu:
      res["TPU"] = self.tpu
    return res

  def remote_options(self) -> dict[str, Any]:
    """The form ``ray.remote(...).options`` takes."""
    options: dict[str, Any] = {"num_cpus": self.cpu}
    if self.gpu:
      options["num_gpus"] = self.gpu
    if self.tpu:
      options["resources"] = {"TPU": self.tpu}
    return options


def choose_resources(cluster: dict[str, float], node_tpus: list[float], cpus: float = 1) -> TrialResources:
  """Pure rule behind ``trial_resources``: ``cluster`` is ``ray.cluster_resources()``,
  ``node_tpus`` the TPU count of each alive node."""
  if cluster.get("GPU", 0) >= 1:
    return TrialResources(cpu=cpus, gpu=1)
  if cluster.get("TPU", 0) >= 1:
    return TrialResources(cpu=cpus, tpu=max(node_tpus))
  return TrialResources(cpu=cpus)


def trial_resources(cpus: float = 1) -> TrialResources:
  """Resources per trial on the connected cluster."""
  import ray  # pylint: disable=import-outside-toplevel
  node_tpus = [n["Resources"].get("TPU", 0) for n in ray.nodes() if n.get("Alive")]
  return choose_resources(ray.cluster_resources(), node_tpus or [0], cpus=cpus)
