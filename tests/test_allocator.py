"""lra_wavelet.allocator: with its options, repeated XLA executions stop faulting in fresh pages."""

import json
import os
import subprocess
import sys

import pytest

from lra_wavelet import allocator

# A jitted function whose temporary ([4096, 4096] float32, 64 MB) is larger than a thread
# arena's heap, the case glibc serves with a fresh mmap on every call by default.
_SCRIPT = """
import json, resource
from lra_wavelet import allocator
applied = allocator.reuse_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda a: jnp.sin(a @ a.T) @ a)
a = jnp.ones((4096, 64))
faults = []
for _ in range(16):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(a).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults, "describe": allocator.describe()}))
"""


def _run(script: str, **env) -> dict:
  """Run ``script`` in a fresh Python (the options must precede JAX's threads); its last line."""
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **env}, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None or sys.platform != "linux", reason="glibc malloc only")
def test_freed_blocks_are_reused_across_executions():
  default = _run(_SCRIPT, LRA_WAVELET_MALLOC="")
  reused = _run(_SCRIPT, LRA_WAVELET_MALLOC="reuse")
  assert not default["applied"] and default["describe"] == "system malloc defaults"
  assert reused["applied"] and "freed blocks reused" in reused["describe"]
  # A 64 MB block faulted in anew is 16,384 faults of 4 KB. In the first calls the heap can
  # grow by a few blocks (small allocations split freed ones); after that the same pages come
  # back on most calls (10 to 14 of these 14 in repeated runs here), while the default
  # faults on every call.
  quiet = sum(faults < 1000 for faults in reused["faults"][2:])
  assert quiet >= 7, (reused, default)


def test_child_environment_puts_the_users_tunables_last(monkeypatch):
  monkeypatch.setenv(allocator.OPT_IN_VARIABLE, "reuse")
  env = allocator.child_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
  if not allocator._wanted():
    assert env == {}
    return
  tunables = env["GLIBC_TUNABLES"].split(":")
  assert "glibc.malloc.mmap_max=0" in tunables and tunables[-1] == "glibc.malloc.arena_max=4"
  assert allocator.child_environment({})["GLIBC_TUNABLES"].split(":") == tunables[:-1]


def test_without_the_opt_in_children_are_left_alone(monkeypatch):
  monkeypatch.delenv(allocator.OPT_IN_VARIABLE, raising=False)
  assert allocator.child_environment() == {}


_TRIM_SCRIPT = """
import json
from lra_wavelet import allocator
allocator.reuse_freed_memory()
import jax, jax.numpy as jnp
def rss_mb():
  return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
f = jax.jit(lambda a: jnp.sin(a @ a.T) @ a)
a = jnp.ones((8192, 16))
for _ in range(3):
  f(a).block_until_ready()   # a 256 MB temporary, freed after each call
held = rss_mb()
released = allocator.release_free_memory()
print(json.dumps({"held": held, "after": rss_mb(), "released": released}))
"""


@pytest.mark.skipif(allocator._glibc() is None or sys.platform != "linux", reason="glibc malloc only")
def test_release_free_memory_hands_the_freed_heap_back():
  result = _run(_TRIM_SCRIPT, LRA_WAVELET_MALLOC="reuse")
  assert result["released"] and result["after"] < result["held"] - 200, result
