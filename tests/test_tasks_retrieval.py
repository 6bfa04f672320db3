"""Retrieval (AAN) on small files in the LRA release format: byte ids of both documents against
an independent encoding, malformed lines reported by file and line, the missing-data message.
(The dual encoder's train step on this task runs in test_presets_all_tasks.py.)"""

from __future__ import annotations

import pytest

from lra_wavelet import configlib, tasks
from lra_wavelet.tasks import retrieval
from tests.conftest import REPO

# Lines as the release writes them: label (int or float), two paper ids, two raw texts.
ROWS = [
    ("1.0", "P84-1003", "W04-0415", "Parsing with ATNs \u00e9t\u00e9.", "A second paper; with \u2603 bytes."),
    ("0.0", "P84-1004", "J90-1002", "short", "x" * 50),
    ("1", "C00-1001", "P98-2001", "b'escaped \\n text'", "tail"),
    ("0", "W01-0101", "W01-0102", "", "empty first document"),
]


def write_split(folder, name, rows):
  folder.mkdir(parents=True, exist_ok=True)
  with open(folder / name, "wb") as f:
    for row in rows:
      f.write("\t".join(row).encode("utf-8") + b"\n")


def write_release(folder, rows=ROWS):
  for split, name in retrieval.SPLIT_FILES.items():
    write_split(folder, name, rows if split != "test" else rows[:2])
  return folder


def config_for(tmp_path, data_dir, **overrides):
  config = configlib.load_config_file(f"{REPO / 'configs/retrieval.py'}:model=transformer,scale=tiny")
  with config.unlocked():
    config.update(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), **overrides)
  return config


def reference(text, length):
  ids = [b + 1 for b in text.encode("utf-8")][:length]
  return ids + [0] * (length - len(ids))


def test_reads_both_documents_at_byte_level(tmp_path):
  config = config_for(tmp_path, write_release(tmp_path / "tsv_data"), max_len=32)
  arrays = retrieval.load("train", config)
  assert arrays["targets"].tolist() == [1, 0, 1, 0]
  assert arrays["inputs"].tolist() == [reference(r[3], 32) for r in ROWS]
  assert arrays["inputs2"].tolist() == [reference(r[4], 32) for r in ROWS]
  assert arrays["inputs2"][1].tolist() == [ord("x") + 1] * 32  # truncated to max_len
  assert retrieval.load("test", config)["targets"].tolist() == [1, 0]
  spec = retrieval.spec(config)
  assert (spec.kind, spec.vocab_size, spec.max_len, spec.num_classes) == ("pair", 257, 32, 2)


@pytest.mark.parametrize("line, message", [
    ("1\tP1\tP2\tonly four", "expected 5 tab-separated fields"),
    ("yes\tP1\tP2\ta\tb", "label b'yes' is not 0 or 1"),
    ("2.0\tP1\tP2\ta\tb", "label b'2.0' is not 0 or 1"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
  path = tmp_path / "new_aan_pairs.train.tsv"
  path.write_bytes(b"1\tA\tB\tx\ty\n" + line.encode() + b"\n")
  with pytest.raises(tasks.DataFormatError, match=f"{path}:2: {message}"):
    retrieval.read_tsv(path)


def test_missing_data_says_how_to_get_it(tmp_path):
  with pytest.raises(tasks.MissingDataError, match="lra_release.*tsv_data.*new_aan_pairs.train.tsv"):
    retrieval.load("train", config_for(tmp_path, tmp_path / "nowhere"))
  with pytest.raises(tasks.MissingDataError, match="no offline generator"):
    retrieval.load("train", config_for(tmp_path, ""))

