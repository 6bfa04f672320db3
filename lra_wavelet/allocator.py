"""Host memory for XLA's CPU runtime: reuse the blocks a step frees instead of faulting in new pages.

XLA's CPU client takes each execution's buffers from malloc, among them one temporary block
that holds all of a train step's intermediates (838 MB at the ListOps small shape). glibc's
malloc serves a block that large with a fresh ``mmap`` (from a thread other than the main one,
always, whatever its thresholds) and unmaps it on free. So every step touches every page of
it anew: one page fault and one zeroed page per 4 KB. At the ListOps small shape on a 2-core
VM that was 214,500 faults and 0.43 s of kernel time per 1.3 s step.

``reuse_freed_memory`` sets three glibc malloc options (``mallopt``): one arena for all
threads, no ``mmap`` for large blocks, and no trimming of the heap. Big blocks then come from
the main heap and stay there when freed, and the next step gets the same pages back (0 faults
per step, the ListOps small step 11% faster; measured numbers are in results/bench_train.md).

The cost: freed memory stays in the process (its RSS does not shrink after a peak), and the
heap can grow by a few step-sized blocks while small allocations split freed ones: a function
with a 64 MB temporary went from 280 to 600 MB in its first calls, then stayed there over 300
calls. ``release_free_memory`` hands free pages back to the OS (not the address space): the
trainer calls it after compiling its step and after each evaluation, the train bench after
compiling, and the mixer bench between cases; the next step faults its temporary in once.

The arena limit binds only threads that have no arena yet, so ``reuse_freed_memory`` must run
before the JAX runtime starts its threads: the binary and the bench's case processes call it
first thing, and processes that others start (Ray workers) get the same options from
``child_environment`` at their start.

Opt-in, with ``LRA_WAVELET_MALLOC=reuse`` (Linux with glibc only), because of the memory it
holds: in the train bench (results/bench_train.md) peak RSS went from 1.6 to 3.0 GB at the
ListOps small shape and from 4.2 to 10.4 GB at ListOps paper, and Pathfinder at paper shape
(a 6.4 GB temporary) no longer fit the bench's 18 GiB data limit, since freed heap keeps its
address space. Without the variable the calls here do nothing and malloc keeps its defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

# mallopt(3) parameter numbers (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
OPT_IN_VARIABLE = "LRA_WAVELET_MALLOC"
# The same options as glibc tunables, read by a process at its start.
_TUNABLES = ("glibc.malloc.arena_max=1", "glibc.malloc.mmap_max=0",
             f"glibc.malloc.trim_threshold={2**62}")

_applied: bool | None = None


def _wanted() -> bool:
  return os.environ.get(OPT_IN_VARIABLE, "").lower() == "reuse" and platform.system() == "Linux"


@functools.cache
def _glibc():
  """The C library if it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``), else None."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement
    return libc
  except (OSError, AttributeError):
    return None


def reuse_freed_memory() -> bool:
  """Keep freed heap blocks for reuse (see the module docstring); True if the options are set.

  Safe to call more than once: later calls return the first call's answer.
  """
  global _applied
  if _applied is None:
    libc = _glibc() if _wanted() else None
    # mallopt returns 1 on success. trim_threshold -1 is SIZE_MAX in glibc: never trim.
    _applied = bool(libc) and all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
  return _applied


def release_free_memory() -> bool:
  """Give the heap's free pages back to the OS now (glibc ``malloc_trim``); True if any went.

  For a process that moves on to work of a different size (the mixer bench, from one case
  to the next): without it, memory the last case freed stays in this process's heap, where
  the next case can reuse it but the OS (and ``MemAvailable``) does not count it as free.
  """
  libc = _glibc() if _applied else None
  return bool(libc and libc.malloc_trim(0))


def child_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
  """Environment variables that give a new process the same options from its start.

  ``GLIBC_TUNABLES`` with our options first and any already set after them (glibc applies
  the list in order, so a setting the user made wins). Empty where ``reuse_freed_memory``
  would do nothing.
  """
  environ = os.environ if environ is None else environ
  if not _wanted():
    return {}
  existing = environ.get("GLIBC_TUNABLES", "")
  return {"GLIBC_TUNABLES": ":".join([*_TUNABLES, *([existing] if existing else [])])}


def describe() -> str:
  """One line for results: which allocator options this process runs with."""
  if _applied:
    return "glibc malloc, freed blocks reused (one arena, no mmap, no trim; lra_wavelet.allocator)"
  return "system malloc defaults"
