"""ListOps generator, reader and vocabulary, checked against an independent evaluator."""

from __future__ import annotations

import statistics
import subprocess
import sys

import numpy as np
import pytest

from lra_wavelet import tasks
from lra_wavelet.tasks import listops
from tests.conftest import micro_config

OPTS = listops.GeneratorOptions(num_train=150, num_val=20, num_test=30, min_length=10,
                                max_length=60, max_depth=4, max_args=5, seed=3)


def evaluate_source(source: str) -> tuple[int, int]:
  """Independent stack evaluator of an LRA ListOps string: (value, token count w/o parens)."""
  ops = {"[MIN": min, "[MAX": max, "[MED": lambda v: int(statistics.median(v)),
         "[SM": lambda v: sum(v) % 10}
  stack: list[list] = []
  tokens = [t for t in source.split() if t not in "()"]
  for tok in tokens:
    if tok in ops:
      stack.append([tok])
    elif tok == "]":
      op, *args = stack.pop()
      value = ops[op](args)
      if not stack:
        return value, len(tokens)
      stack[-1].append(value)
    else:
      if not stack:
        return int(tok), len(tokens)
      stack[-1].append(int(tok))
  raise AssertionError(f"unbalanced expression {source!r}")


def test_generator_follows_grammar_and_bounds():
  examples = listops.generate_examples(OPTS)
  assert len(examples) == 200
  assert len({s for s, _ in examples}) == 200  # de-duplicated
  for source, target in examples:
    value, length = evaluate_source(source)
    assert value == target
    assert OPTS.min_length < length < OPTS.max_length
    assert source.count("(") == source.count(")")
  assert set(t for _, t in examples) == set(range(10))


def test_generator_is_deterministic_and_seeded():
  assert listops.generate_examples(OPTS) == listops.generate_examples(OPTS)
  other = listops.GeneratorOptions(**{**OPTS.__dict__, "seed": 4})
  assert listops.generate_examples(other) != listops.generate_examples(OPTS)


def test_official_layout_roundtrip(tmp_path):
  folder = listops.generate(tmp_path / "listops-1000", OPTS)
  for split, name in listops.SPLIT_FILES.items():
    lines = (folder / name).read_text().splitlines()
    assert lines[0] == "Source\tTarget"
  sequences, targets = listops.read_tsv(folder / "basic_train.tsv")
  examples = listops.generate_examples(OPTS)[:150]
  assert targets == [t for _, t in examples]
  expected = [[listops.TOKEN_ID[t] for t in s.split() if t not in "()"] for s, _ in examples]
  assert sequences == expected


def test_reference_format_line_is_read(tmp_path):
  # A line exactly as the LRA release writes it.
  path = tmp_path / "basic_test.tsv"
  path.write_text("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n( ( ( [SM 5 ) 7 ) ] )\t2\n")
  sequences, targets = listops.read_tsv(path)
  ids = listops.TOKEN_ID
  assert sequences[0] == [ids["[MAX"], ids["2"], ids["9"], ids["]"]]
  assert targets == [9, 2]


@pytest.mark.parametrize("line, message", [
    ("( ( [MAX 2 ) 9 ] )", "expected 2 tab-separated fields"),
    ("( ( [MAX 2 ) 9 ] )\t12", "is not a digit"),
    ("( ( [FOO 2 ) 9 ] )\t1", "unknown ListOps token"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
  path = tmp_path / "basic_train.tsv"
  path.write_text(f"Source\tTarget\n( ( [MIN 1 ) 2 ] )\t1\n{line}\n")
  with pytest.raises(tasks.DataFormatError, match=f"{path}:3: .*{message}"):
    listops.read_tsv(path)


def test_missing_data_dir_says_how_to_get_it(tmp_path):
  config = micro_config(tmp_path, data_dir=str(tmp_path / "nowhere"))
  with pytest.raises(tasks.MissingDataError, match="lra_release.*basic_train.tsv"):
    listops.load("train", config)


def test_vocabulary_identical_across_processes(tmp_path):
  code = ("from lra_wavelet.tasks import listops; "
          "print(listops.VOCAB); print(listops.tokenize('( ( ( [MED 3 ) ( ( [SM 4 ) 5 ] ) ) ] )'))")
  outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONHASHSEED": str(seed), "PATH": ""}, check=True).stdout
             for seed in (1, 2)}
  assert len(outputs) == 1
  assert "'<pad>', '0', '1'" in outputs.pop()


def test_load_generates_caches_and_pads(tmp_path):
  config = micro_config(tmp_path)
  first = listops.load("validation", config)
  assert first["inputs"].shape == (64, 32) and first["inputs"].dtype == np.int32
  assert first["targets"].shape == (64,)
  cached = list((tmp_path / "listops").glob("generated-*/.lra_wavelet_cache/validation-*.npz"))
  assert len(cached) == 1
  again = listops.load("validation", config)
  np.testing.assert_array_equal(first["inputs"], again["inputs"])
