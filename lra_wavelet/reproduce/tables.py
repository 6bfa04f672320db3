"""The published tables this project reproduces, as data.

A table is a grid of cells (task x model preset); each cell may carry the number the paper
published (test accuracy in %), or none where the paper has no number for it. Presets are the
names in ``lra_wavelet.presets``; tasks are the config files ``configs/<task>.py``.

Sources (numbers as collected in the project's REFERENCES.md):

* ``wavspa_lra``: WavSpA (Zhuang et al., UniReps 2023), LRA table: five backbones, each plain
  and with AdaWavSpA / OrthoWavSpA / LiftWavSpA.
* ``lra``: the LRA baselines (Tay et al., ICLR 2021) as restated in WavSpA's backbone rows.
* ``mra_lra``: MRA-2 and MRA-2-s (Zeng et al., ICML 2022) on the five LRA tasks. The paper's
  per-task LRA numbers are not in the project's references (and could not be retrieved), so
  the paper column is empty.
* ``wersa_lra``: WERSA (Dentamaro 2025) against the attention it was compared with; the paper
  reports no LRA numbers, so the paper column is empty.
* ``lego``: length extrapolation on LEGO (Zhang et al. 2022), the experiment behind WavSpA's
  extrapolation claim; no numbers are public.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from lra_wavelet.configlib import ConfigError

LRA_TASKS = ("listops", "text", "retrieval", "image", "pathfinder")

BACKBONE_LABELS = {"transformer": "Transformer", "longformer": "Longformer", "linformer": "Linformer",
                   "linear": "Linear Att.", "performer": "Performer"}
WAVSPA_LABELS = {"ada": "AdaWavSpA", "ortho": "OrthoWavSpA", "lift": "LiftWavSpA"}


@dataclasses.dataclass(frozen=True)
class Row:
  """One model of a table: its preset, display label and published numbers (task -> %)."""
  preset: str
  label: str
  paper: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Table:
  """A published table: ``rows`` x ``tasks`` cells, test accuracy in %."""
  name: str
  title: str
  source: str
  tasks: tuple[str, ...]
  rows: tuple[Row, ...]
  notes: str = ""

  def row(self, preset: str) -> Row:
    for row in self.rows:
      if row.preset == preset:
        return row
    raise ConfigError(f"table {self.name!r} has no row {preset!r}; its rows: "
                     f"{', '.join(r.preset for r in self.rows)}")

  def paper(self, preset: str, task: str) -> float | None:
    """The published accuracy (%) of cell (task, preset), or None if the paper has none."""
    return self.row(preset).paper.get(task)

  def paper_average(self, preset: str, tasks: tuple[str, ...] | None = None) -> float | None:
    """Mean published accuracy over ``tasks`` (default: all of the table's), if all exist."""
    values = [self.paper(preset, t) for t in (tasks or self.tasks)]
    if not values or any(v is None for v in values):
      return None
    return sum(values) / len(values)


def _lra_row(preset: str, label: str, numbers: tuple[float, ...] | None) -> Row:
  return Row(preset, label, dict(zip(LRA_TASKS, numbers)) if numbers else {})


# WavSpA's LRA table (ListOps, Text, Retrieval, Image, Pathfinder), keyed by backbone then
# variant (None = the plain backbone).
_WAVSPA_NUMBERS: dict[str, dict[str | None, tuple[float, ...]]] = {
    "transformer": {None: (36.37, 64.27, 57.46, 42.44, 71.40),
                    "ada": (55.40, 81.60, 79.27, 55.58, 81.12),
                    "ortho": (45.95, 81.63, 71.52, 49.29, 81.13),
                    "lift": (42.95, 75.63, 56.45, 42.48, 81.73)},
    "longformer": {None: (35.63, 62.85, 56.89, 42.22, 69.71),
                   "ada": (49.30, 79.73, 58.57, 50.84, 79.48),
                   "ortho": (39.45, 78.41, 79.93, 49.93, 79.47),
                   "lift": (39.40, 78.00, 53.27, 40.95, 75.80)},
    "linformer": {None: (35.70, 53.94, 52.27, 38.47, 66.44),
                  "ada": (37.15, 54.75, 61.09, 34.93, 65.66),
                  "ortho": (38.05, 56.93, 60.25, 39.45, 65.35),
                  "lift": (37.30, 54.43, 70.73, 34.66, 63.49)},
    "linear": {None: (16.13, 65.90, 53.09, 42.32, 75.91),
               "ada": (38.90, 76.82, 71.38, 54.81, 79.68),
               "ortho": (39.55, 79.45, 69.65, 49.93, 78.09),
               "lift": (38.35, 73.39, 54.06, 44.39, 74.46)},
    "performer": {None: (18.01, 65.40, 53.82, 42.77, 77.05),
                  "ada": (46.05, 80.93, 71.16, 52.06, 77.17),
                  "ortho": (39.80, 79.10, 57.67, 48.78, 78.09),
                  "lift": (39.85, 75.96, 52.75, 39.97, 76.20)},
}


def _wavspa_rows() -> tuple[Row, ...]:
  rows = []
  for backbone, variants in _WAVSPA_NUMBERS.items():
    for variant, numbers in variants.items():
      preset = backbone if variant is None else f"{backbone}_wavspa_{variant}"
      label = BACKBONE_LABELS[backbone] + ("" if variant is None else f" + {WAVSPA_LABELS[variant]}")
      rows.append(_lra_row(preset, label, numbers))
  return tuple(rows)


def _tables() -> dict[str, Table]:
  plain = {b: v[None] for b, v in _WAVSPA_NUMBERS.items()}
  tables = [
      Table(
          name="wavspa_lra",
          title="WavSpA on Long Range Arena: backbones plain and in wavelet space",
          source="Zhuang, Wang, Tao, Shang. WavSpA: Wavelet Space Attention for Boosting "
                 "Transformers' Long Sequence Learning Ability. UniReps 2023 (PMLR v243), LRA table",
          tasks=LRA_TASKS, rows=_wavspa_rows(),
          notes="Averages are recomputed from the per-task numbers (three averages printed in the "
                "public README do not match their rows)."),
      Table(
          name="lra",
          title="Long Range Arena baselines",
          source="Tay et al. Long Range Arena: A Benchmark for Efficient Transformers. ICLR 2021, "
                 "Table 1, as restated in WavSpA's backbone rows",
          tasks=LRA_TASKS,
          rows=tuple(_lra_row(b, BACKBONE_LABELS[b], plain[b]) for b in plain),
          notes="WavSpA restates the LRA rows; LRA's own Table 1 differs slightly for Linformer "
                "(average 51.36) and Linear Trans. (average 50.55)."),
      Table(
          name="mra_lra",
          title="MRA-2 and MRA-2-s on Long Range Arena",
          source="Zeng, Pal, Kline, Fung, Singh. Multi Resolution Analysis (MRA) for Approximate "
                 "Self-Attention. ICML 2022, LRA table",
          tasks=LRA_TASKS,
          rows=(_lra_row("transformer", "Transformer", None), _lra_row("mra2", "MRA-2", None),
                _lra_row("mra2_sparse", "MRA-2-s", None)),
          notes="The MRA paper's per-task LRA accuracies are not in this project's references and "
                "could not be retrieved, so the paper column is empty; the MRA code's LRA settings "
                "(2 layers, dim 64, block_per_row 8) differ from the tiny/small configs."),
      Table(
          name="wersa_lra",
          title="WERSA against the attention it was compared with, on Long Range Arena",
          source="Dentamaro. WERSA: Wavelet-Enhanced Random Spectral Attention. arXiv 2507.08637 (2025)",
          tasks=LRA_TASKS,
          rows=tuple(_lra_row(p, label, None) for p, label in (
              ("transformer", "Transformer (MHA)"), ("wersa", "WERSA"), ("fnet", "FNet"),
              ("linformer", "Linformer"), ("performer", "Performer"),
              ("transformer_wavspa", "Waveformer (WavSpA, db2)"))),
          notes="The WERSA paper reports ArXiv and ArXiv-128k classification, not LRA: the paper "
                "column is empty by design; the table compares the same models on LRA."),
      Table(
          name="lego",
          title="LEGO chain reasoning: length extrapolation, plain vs wavelet vs Fourier space",
          source="Zhang et al. Unveiling Transformers with LEGO (2022); the claim tested is "
                 "WavSpA's (better extrapolation in wavelet space)",
          tasks=("lego",),
          rows=tuple(Row(p, label) for p, label in (
              ("transformer", "Transformer"), ("transformer_wavspa", "Transformer + WavSpA (db2)"),
              ("transformer_wavspa_ada", "Transformer + AdaWavSpA"),
              ("transformer_wavspa_ortho", "Transformer + OrthoWavSpA"),
              ("transformer_wavspa_lift", "Transformer + LiftWavSpA"),
              ("fourier_attention", "Attention in Fourier space"))),
          notes="WavSpA's LEGO numbers are not public: the paper column is empty. The accuracy per "
                "chain position (trained on the first positions, tested on all) is plotted."),
  ]
  return {t.name: t for t in tables}


TABLES = _tables()
# Other names a table answers to (the names the project's issues and notes use); results files
# are always named after the table itself (results/lra_<scale>.md for lra_baselines).
ALIASES = {"lra_baselines": "lra", "wersa": "wersa_lra"}


def get(name: str) -> Table:
  """The table called ``name`` or one of its ``ALIASES``."""
  table = TABLES.get(ALIASES.get(name, name))
  if table is None:
    aliases = ", ".join(f"{a} (= {t})" for a, t in ALIASES.items())
    raise ConfigError(f"unknown table {name!r}; valid tables: {', '.join(TABLES)}; also: {aliases}")
  return table
