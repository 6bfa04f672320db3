"""Reproduce the papers' tables: ``lra-wavelet reproduce --table=<name> --scale=<scale>``.

* ``tables``: the published tables as data (every cell: task x model preset -> paper number);
* ``runner``: trains the cells (one ``lra-wavelet train`` process per cell, locally or as Ray
  tasks), skips finished cells, reports failed ones without stopping;
* ``report``: writes ``results/<table>_<scale>.md`` / ``.csv`` and plots, with provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence


def reproduce(table: str, *, scale: str, tasks: Sequence[str] | None = None, presets: Sequence[str] | None = None,
              seeds: Sequence[int] = (0,), root: str | Path = "workdirs/reproduce",
              results_dir: str | Path = "results", overrides: Sequence[str] = (), ray_address: str = "",
              cpus_per_cell: float = 1, command: str = "", log: Callable[[str], None] = print) -> list[Path]:
  """Run the requested cells of ``table`` and write its report; returns the files written."""
  from lra_wavelet.reproduce import report, runner, tables  # pylint: disable=import-outside-toplevel
  spec = tables.get(table)
  parsed = runner.parse_overrides(overrides)
  results = runner.run(spec, scale=scale, tasks_to_run=tasks, presets=presets, seeds=seeds, root=root,
                       overrides=parsed, ray_address=ray_address, cpus_per_cell=cpus_per_cell, log=log)
  failed = sum(r.status == "failed" for r in results)
  if failed:
    log(f"{failed} of {len(results)} cells failed (listed in the report)")
  return report.write(spec, scale, results, results_dir, command=command, overrides=parsed)
