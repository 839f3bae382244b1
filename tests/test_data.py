"""Local GLUE mirror readers: exact row and label counts, every parsing pitfall."""

from __future__ import annotations

import pytest

from robustbench_nlp.errors import DataError, UnknownNameError
from robustbench_nlp.tasks import LocalFile, find_data_dir, get_task, load_split, read_local_tsv


def test_sst2_counts(data_dir):
    train, src = load_split("sst2", "train")
    assert src.startswith("local:")
    assert len(train) == 67_349
    assert train["label"].value_counts().to_dict() == {0: 29_780, 1: 37_569}
    dev, _ = load_split("sst2", "validation")
    assert len(dev) == 872
    assert dev["label"].value_counts().to_dict() == {0: 428, 1: 444}
    assert list(dev.columns) == ["sentence", "label"]
    assert dev["sentence"].iloc[0] == "it 's a charming and often affecting journey ."


def test_mirror_found_from_parent_layout(data_dir, tmp_path, monkeypatch):
    # a clone elsewhere with ../shared/data beside it, run from the clone root
    clone = tmp_path / "clone"
    (tmp_path / "shared").symlink_to(data_dir.parent)
    clone.mkdir()
    monkeypatch.chdir(clone)
    monkeypatch.delenv("RBNLP_DATA_DIR", raising=False)
    assert find_data_dir() is not None


def test_bad_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RBNLP_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="not a GLUE mirror"):
        find_data_dir()


def test_missing_column(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("sentence\tlabels\nfine\t1\n")
    with pytest.raises(DataError, match="missing column.*'label'"):
        read_local_tsv(p, get_task("sst2").local["train"], get_task("sst2"))


def test_unknown_label_and_quotes(tmp_path):
    task = get_task("rte")
    spec = LocalFile("x", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
                     {"entailment": 0, "not_entailment": 1})
    p = tmp_path / "rte.tsv"
    p.write_text('\ufeffsentence1\tsentence2\tlabel\n"He said "hi\tok\tentailment\n'
                 'b\tc\tnot_entailment\n')
    df = read_local_tsv(p, spec, task)
    assert len(df) == 2 and df["label"].tolist() == [0, 1]
    assert df["sentence1"].iloc[0] == '"He said "hi'
    p.write_text("sentence1\tsentence2\tlabel\na\tb\tcontradiction\n")
    with pytest.raises(DataError, match="unknown label 'contradiction' in data row 1"):
        read_local_tsv(p, spec, task)


def test_empty_sentence_and_bad_bytes(tmp_path):
    task = get_task("sst2")
    p = tmp_path / "s.tsv"
    p.write_text("sentence\tlabel\n   \t1\n")
    with pytest.raises(DataError, match="empty 'sentence' in data row 1"):
        read_local_tsv(p, task.local["train"], task)
    p.write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_local_tsv(p, task.local["train"], task)


def test_unknown_task():
    with pytest.raises(UnknownNameError, match="did you mean 'sst2'"):
        get_task("sst-2")
