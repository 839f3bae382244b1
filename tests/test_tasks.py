"""The four GLUE tasks: exact row/label counts of every local split, label mapping of every
file format, task metadata, and TextFooler's fixed segment on sentence-pair tasks.

The expected counts were measured with an independent reader (``csv`` with ``QUOTE_NONE``)
and agree with the row counts of the data mirror's README.
"""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from robustbench_nlp.tasks import TASKS, get_task, load_split

# (task, split) -> (rows, {Hub label id: rows})
COUNTS = {
    ("sst2", "train"): (67_349, {0: 29_780, 1: 37_569}),
    ("sst2", "validation"): (872, {0: 428, 1: 444}),
    ("mrpc", "train"): (3_668, {0: 1_194, 1: 2_474}),
    ("mrpc", "validation"): (408, {0: 129, 1: 279}),
    ("rte", "train"): (2_490, {0: 1_249, 1: 1_241}),
    ("rte", "validation"): (277, {0: 146, 1: 131}),
    ("qnli", "train"): (10_475, {0: 5_227, 1: 5_248}),
    ("qnli", "validation"): (5_463, {0: 2_702, 1: 2_761}),
}


def test_every_local_split_is_counted():
    assert set(COUNTS) == {(t, s) for t, task in TASKS.items() for s in task.local}


@pytest.mark.parametrize("name, split", sorted(COUNTS))
def test_split_counts(data_dir, name, split):
    task = get_task(name)
    df, src = load_split(task, split, data_dir)
    rows, labels = COUNTS[name, split]
    assert src == f"local:{data_dir / task.local[split].path}"
    assert list(df.columns) == [*task.text_columns, "label"]
    assert len(df) == rows
    assert df["label"].value_counts().to_dict() == labels
    assert str(df["label"].dtype) == "int64"


def _independent(path, label_col, text_cols, label_map):
    """csv-module reader: quoting off, BOM stripped by hand, labels mapped by hand."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.lstrip("\ufeff") for h in next(reader)]
        rows = list(reader)
    li = header.index(label_col)
    texts = {c: [r[header.index(c)].strip() for r in rows] for c in text_cols}
    return texts, [label_map[r[li]] if r[li] in label_map else int(r[li]) for r in rows]


@pytest.mark.parametrize("name, split", sorted(COUNTS))
def test_rows_match_independent_reader(data_dir, name, split):
    task = get_task(name)
    spec = task.local[split]
    df, _ = load_split(task, split, data_dir)
    local_text = [c for c, hub in spec.columns.items() if hub != "label"]
    local_label = next(c for c, hub in spec.columns.items() if hub == "label")
    texts, labels = _independent(data_dir / spec.path, local_label, local_text,
                                 {"entailment": 0, "not_entailment": 1})
    assert df["label"].tolist() == labels
    for local, hub in spec.columns.items():
        if hub != "label":
            assert df[hub].tolist() == texts[local]


def test_string_labels_rte_match_hub_parquet_ids(data_dir):
    """RTE TSV labels are strings; the Hub's parquet export of the same rows has integer ids."""
    for split in ("train", "validation"):
        df, _ = load_split("rte", split, data_dir)
        hub = pd.read_parquet(data_dir / "glue" / "rte" / "hf_parquet" / f"{split}.parquet")
        assert df["label"].tolist() == hub["label"].tolist()
        assert df["sentence2"].tolist() == hub["sentence2"].str.strip().tolist()
    dev, _ = load_split("rte", "validation", data_dir)
    assert dev.iloc[0].to_dict() == {
        "sentence1": "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung "
                     "cancer at age 44, according to the Christopher Reeve Foundation.",
        "sentence2": "Christopher Reeve had an accident.", "label": 1}  # not_entailment


def test_string_labels_qnli_dev_and_integer_ids_qnli_train(data_dir):
    dev, _ = load_split("qnli", "validation", data_dir)
    assert dev.iloc[0].to_dict() == {
        "question": "What came into force after the new constitution was herald?",
        "sentence": "As of that day, the new constitution heralding the Second Republic came "
                    "into force.", "label": 0}  # "entailment"
    train, _ = load_split("qnli", "train", data_dir)
    assert (data_dir / "glue/qnli/train_10pct.tsv").read_text().splitlines()[1].endswith("\t1")
    assert train.iloc[0][["question", "label"]].tolist() == [
        "When did the third Digimon series begin?", 1]  # integer id 1 = not_entailment


def test_mrpc_bom_and_integer_quality(data_dir):
    path = data_dir / "glue" / "mrpc" / "dev.tsv"
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"  # the pitfall is really there
    dev, _ = load_split("mrpc", "validation", data_dir)
    first = dev.iloc[0].to_dict()
    assert first["label"] == 1  # Quality 1 = equivalent
    assert first["sentence1"] == ("He said the foodservice pie business doesn't fit the "
                                  "company's long-term growth strategy.")
    # a quote opening a field is kept (quoting off), not merged with the next row
    assert first["sentence2"].startswith('"The foodservice pie business does not fit')


def test_task_metadata():
    t = {n: get_task(n) for n in ("sst2", "mrpc", "rte", "qnli")}
    assert {n: (x.text_columns, x.attacked_column, x.advglue, x.metrics) for n, x in t.items()} == {
        "sst2": (("sentence",), None, "sst2", ("accuracy",)),
        "mrpc": (("sentence1", "sentence2"), "sentence2", None, ("accuracy", "f1")),
        "rte": (("sentence1", "sentence2"), "sentence2", "rte", ("accuracy",)),
        "qnli": (("question", "sentence"), "sentence", "qnli", ("accuracy",)),
    }
    assert t["mrpc"].label_names == ("not_equivalent", "equivalent")
    assert t["rte"].label_names == t["qnli"].label_names == ("entailment", "not_entailment")
    assert t["qnli"].note("train").startswith("local QNLI train is a 10% subset (10,475 of "
                                              "104,743 rows")
    assert [n for n, x in t.items() if x.note("train") or x.note("validation")] == ["qnli"]


def test_list_tasks_notes_qnli_subset(capsys):
    from robustbench_nlp.cli import main

    assert main(["list", "tasks"]) == 0
    lines = {ln.split(":", 1)[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert set(lines) == {"sst2", "mrpc", "rte", "qnli"}
    assert "NOTE: local QNLI train is a 10% subset (10,475 of 104,743 rows" in lines["qnli"]
    assert all("NOTE" not in lines[n] for n in ("sst2", "mrpc", "rte"))
    assert "attacked segment sentence2" in lines["mrpc"] and "AdvGLUE no" in lines["mrpc"]
    assert "metrics accuracy, f1" in lines["mrpc"]


# ---------------------------------------------------------------------------- pair attacks
@pytest.fixture(scope="module")
def victim():
    import torch

    from robustbench_nlp.attacks.wrapper import ClassifierWrapper
    from robustbench_nlp.backbones import load_backbone

    torch.manual_seed(0)
    tok, model, _ = load_backbone("minilm", num_labels=2)
    model.eval()
    return ClassifierWrapper(model, tok)


@pytest.mark.slow
@pytest.mark.parametrize("name, attacked", [("rte", None), ("mrpc", None),
                                            ("mrpc", "sentence1")])
def test_textfooler_keeps_fixed_segment(data_dir, victim, name, attacked):
    """Every adversarial example keeps the fixed segment byte for byte; the attacked one is
    modified in at least one example (so the check is not vacuous)."""
    from robustbench_nlp.attacks.textfooler import TextFooler

    task = get_task(name)
    dev, _ = load_split(task, "validation", data_dir)
    atk = TextFooler(TextFooler.Config(resources="offline", query_budget=60,
                                       attacked_column=attacked))
    col = atk.attacked_column(task)
    seg = task.text_columns.index(col)
    fixed = 1 - seg
    # short attacked segments the (untrained) model classifies correctly: not skipped
    short = dev[dev[col].str.split().str.len().between(6, 12)]
    pairs = list(short[list(task.text_columns)].itertuples(index=False, name=None))
    right = short[victim.predict(pairs) == short["label"].to_numpy()]
    rows = atk.examples(task, right, 3, seed=0)
    assert len(rows) == 3
    results = list(atk.run(victim, task, rows))
    assert [r.result for r in results].count("skipped") == 0
    for r, row in zip(results, rows.to_dict("records")):
        assert r.attacked_segment == seg
        assert r.original == tuple(row[c] for c in task.text_columns)
        assert r.adversarial[fixed] == r.original[fixed]
    assert any(r.adversarial[seg] != r.original[seg] for r in results)
