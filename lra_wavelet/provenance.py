"""Where a result came from: package versions, git commit, machine, devices and date.

Every results.json and every results/ table records this, so numbers can be traced to the
code and hardware that produced them.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from lra_wavelet import allocator

PACKAGES = ("lra_wavelet", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain",
            "numpy", "PyWavelets", "tensorflow-datasets", "ml-collections")


def package_versions(packages=PACKAGES) -> dict[str, str]:
  versions = {}
  for name in packages:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


def git_commit() -> str:
  """Commit of the checkout this package runs from (with '+dirty' if modified), or 'unknown'."""
  root = Path(__file__).resolve().parent.parent
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                            timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return commit + ("+dirty" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def cpu_model() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
  import jax  # pylint: disable=import-outside-toplevel
  devices = jax.devices()
  return {
      "host": platform.node(),
      "cpu": cpu_model(),
      "cpu_count": str(os.cpu_count()),
      "platform": devices[0].platform,
      "device_kind": devices[0].device_kind,
      "device_count": str(len(devices)),
      "python": platform.python_version(),
      "malloc": allocator.describe(),
  }


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def record() -> dict:
  return {"versions": package_versions(), "git_commit": git_commit(), "machine": machine(), "date": now()}
