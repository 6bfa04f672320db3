"""Path-X (LRA): Pathfinder at 128x128, hard (16,384 tokens):
``--config=configs/pathx.py:model=<preset>,scale=<tiny|small|paper>``.

The same task, data fields and arguments as configs/pathfinder.py (which this file loads),
with resolution=128 and difficulty=hard as defaults: the LRA release's
``pathfinder128/curv_contour_length_14`` via ``--config.data_dir``, or generated offline.
"""

from pathlib import Path

from lra_wavelet import configlib


def get_config(arg=None):
  return configlib.load_config_file(f"{Path(__file__).with_name('pathfinder.py')}:resolution=128,"
                                    f"difficulty=hard,{arg or ''}")
