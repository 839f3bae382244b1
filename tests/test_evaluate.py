"""Evaluate-only runs (``rbnlp eval``), the label mapping of checkpoints, export formats and
the ``--db`` check.

The end-to-end tests fine-tune all-MiniLM-L6-v2 (offline weights) for a few seconds on 200
SST-2 training sentences, save it as a sequence-classification checkpoint with its own
``id2label`` (and a LoRA adapter on the same model), evaluate each with ``rbnlp eval`` and
check ACC against a direct evaluation with plain ``transformers`` / ``peft``, the stored rows
and the leaderboard. The label-mapping errors use a tiny random BERT saved to a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustbench_nlp.cli import main
from robustbench_nlp.errors import ConfigError

N = 5  # attacked examples
#: the full checkpoint's labels: reversed against SST-2's ids and upper-case, so the
#: mapping by names is exercised (case-insensitive, not the identity)
FULL_ID2LABEL = {0: "POSITIVE", 1: "NEGATIVE"}


def minilm_path() -> str:
    from robustbench_nlp.backbones import resolve_model

    return resolve_model("minilm")[0]


def _fit_head(model, tokenizer, texts, labels, steps: int = 300, lr: float = 1e-2) -> None:
    """Train the classification head alone on the frozen encoder's pooled states of
    ``texts`` (computed once: seconds on one thread)."""
    model.eval()
    with torch.no_grad():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=64,
                        return_tensors="pt")
        pooled = model.bert(**enc).pooler_output
    y = torch.tensor(labels)
    opt = torch.optim.Adam(model.classifier.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model.classifier(pooled), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _train(model, tokenizer, texts, labels, lr: float, steps: int) -> None:
    """``steps`` optimizer steps on batches of 16 of ``texts``."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        i = (step * 16) % len(texts)
        enc = tokenizer(texts[i:i + 16], padding=True, truncation=True, max_length=64,
                        return_tensors="pt")
        loss = model(**enc, labels=torch.tensor(labels[i:i + 16])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _sst2_train(data_dir, n: int = 200):
    from robustbench_nlp.tasks import load_split

    df, _ = load_split("sst2", "train", data_dir)
    df = df.sample(n=n, random_state=0)
    return df["sentence"].tolist(), df["label"].tolist()


def fine_tune_checkpoint(out: Path, data_dir) -> Path:
    """all-MiniLM-L6-v2 with a classification head fitted on 200 SST-2 sentences, saved
    with ``id2label`` :data:`FULL_ID2LABEL`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=2, id2label=FULL_ID2LABEL,
        label2id={v: k for k, v in FULL_ID2LABEL.items()})
    texts, labels = _sst2_train(data_dir)
    # SST-2's 0 = negative is this checkpoint's output 1
    _fit_head(model, tok, texts, [1 - y for y in labels])
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def lora_checkpoint(out: Path, data_dir) -> Path:
    """A LoRA adapter (sequence classification: LoRA on the attention's query/value and a
    trained head) on all-MiniLM-L6-v2, a few steps on 200 SST-2 sentences, saved with the
    tokenizer and a config.json naming its labels."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    base = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=2, id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1})
    texts, labels = _sst2_train(data_dir)
    _fit_head(base, tok, texts, labels)  # the adapter's head (modules_to_save) starts here
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
                                            target_modules=["query", "value"]))
    _train(model, tok, texts, labels, lr=5e-4, steps=6)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    base.config.save_pretrained(out)
    return out


def tiny_bert(path: Path, id2label: dict | None = None, head: bool = True) -> Path:
    """A 2-layer random BERT saved to ``path`` with MiniLM's tokenizer: a
    ``BertForSequenceClassification`` with ``id2label`` (its head saved), or with
    ``head=False`` a bare ``BertModel`` (no classification head in the checkpoint)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    tok = AutoTokenizer.from_pretrained(minilm_path())
    id2label = id2label or {0: "negative", 1: "positive"}
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                     num_labels=len(id2label), id2label=id2label,
                     label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(0)
    (BertForSequenceClassification(cfg) if head else BertModel(cfg)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err.strip()


def run_count(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        return con.execute("select count(*) from runs").fetchone()[0]
    finally:
        con.close()


# ------------------------------------------------------------------------ label mapping
SST2 = ("negative", "positive")


def test_label_order_by_names_and_label_map():
    from robustbench_nlp.backbones import label_order, parse_label_map

    assert label_order({0: "negative", 1: "positive"}, SST2) == [0, 1]
    assert label_order({0: "POSITIVE", 1: "Negative"}, SST2) == [1, 0]  # case-insensitive
    assert label_order({"0": "LABEL_0", "1": "LABEL_1"}, SST2, "0=positive,1=negative") == [1, 0]
    assert label_order({0: "LABEL_0", 1: "LABEL_1"}, SST2, "0=0, 1=1") == [0, 1]  # by task id
    assert parse_label_map("1=Positive,0=negative", SST2) == {1: 1, 0: 0}


@pytest.mark.parametrize("id2label, label_map, message", [
    ({0: "a", 1: "b", 2: "c"}, None,
     "the checkpoint has 3 labels (0=a, 1=b, 2=c), sst2 has 2 (negative, positive)"),
    ({0: "Positive", 1: "positive"}, None,
     "ambiguous checkpoint labels: outputs 0 and 1 are both named 'positive'; pass "
     "--label-map (e.g. --label-map 0=negative,1=positive)"),
    ({0: "LABEL_0", 1: "LABEL_1"}, None,
     "the checkpoint's labels (0=LABEL_0, 1=LABEL_1) do not match sst2's (negative, "
     "positive); pass --label-map (e.g. --label-map 0=negative,1=positive)"),
    ({0: "LABEL_0", 1: "LABEL_1"}, "0=positive,1=positive",
     "ambiguous --label-map: checkpoint outputs 0 and 1 both map to 'positive'"),
    ({0: "LABEL_0", 1: "LABEL_1"}, "0=negative",
     "--label-map: checkpoint output 1 (LABEL_1) is not mapped (e.g. --label-map "
     "0=negative,1=positive)"),
    ({0: "LABEL_0", 1: "LABEL_1"}, "0=negative,1=positive,2=positive",
     "--label-map: the checkpoint has no output id 2 (its labels: 0=LABEL_0, 1=LABEL_1)"),
    ({0: "LABEL_0", 1: "LABEL_1"}, "0=neg,1=positive",
     "--label-map: 'neg' is not a label of the task (one of negative, positive)"),
    ({0: "LABEL_0", 1: "LABEL_1"}, "negative,positive",
     "--label-map: 'negative' is not CHECKPOINT_ID=TASK_LABEL (e.g. --label-map "
     "0=negative,1=positive)"),
], ids=["count", "ambiguous-names", "unknown-names", "ambiguous-map", "unmapped", "no-such-id",
        "unknown-task-label", "malformed"])
def test_label_order_errors(id2label, label_map, message):
    from robustbench_nlp.backbones import label_order

    with pytest.raises(ConfigError) as e:
        label_order(id2label, SST2, label_map, task_name="sst2")
    assert str(e.value) == message


def test_checkpoint_label_errors_through_the_cli(capsys, tmp_path, data_dir):
    """A label count that differs, ambiguous names, names the task does not have, a new
    head: one line on stderr, exit 2, no run stored; the database line comes first."""
    db = tmp_path / "e.db"
    base = ["eval", "--task", "sst2", "--db", f"sqlite:///{db}", "--data-dir", data_dir,
            "--no-progress"]
    cases = [
        (tiny_bert(tmp_path / "three", {0: "a", 1: "b", 2: "c"}), [],
         "error: the checkpoint has 3 labels (0=a, 1=b, 2=c), sst2 has 2 (negative, positive)"),
        (tiny_bert(tmp_path / "twice", {0: "pos", 1: "POS"}), [],
         "error: ambiguous checkpoint labels: outputs 0 and 1 are both named 'POS'; pass "
         "--label-map (e.g. --label-map 0=negative,1=positive)"),
        (tiny_bert(tmp_path / "generic", {0: "LABEL_0", 1: "LABEL_1"}), [],
         "error: the checkpoint's labels (0=LABEL_0, 1=LABEL_1) do not match sst2's "
         "(negative, positive); pass --label-map (e.g. --label-map 0=negative,1=positive)"),
        (tiny_bert(tmp_path / "bare", head=False), [],
         f"error: '{tmp_path / 'bare'}' has no trained classification head: 2 weights would "
         "be newly initialised (classifier.bias, classifier.weight); evaluate a fine-tuned "
         "checkpoint, or pass --allow-new-head to attack a random head"),
    ]
    for folder, extra, message in cases:
        rc, out, err = cli(capsys, *base, "--model", folder, *extra)
        assert (rc, err) == (2, message)
        assert out.splitlines() == [f"database: sqlite:///{db}"]
    assert run_count(db) == 0


def test_new_head_only_with_the_flag(tmp_path):
    from robustbench_nlp.backbones import CheckpointClassifier, load_checkpoint

    bare = tiny_bert(tmp_path / "bare", head=False)
    with pytest.raises(ConfigError, match="has no trained classification head"):
        load_checkpoint(str(bare), SST2)
    tok, model, info = load_checkpoint(str(bare), SST2, allow_new_head=True)
    assert isinstance(model, CheckpointClassifier)
    assert info["new_weights"] == ["classifier.bias", "classifier.weight"]
    assert info["label_order"] == [0, 1]  # a random head: outputs in order
    enc = tok(["a film"], return_tensors="pt")
    assert model(**enc).shape == (1, 2)


def test_label_order_reorders_the_logits(tmp_path):
    """The classifier's logits come in the task's label order: a checkpoint named
    (positive, negative) gives its two logits swapped."""
    from transformers import AutoModelForSequenceClassification

    from robustbench_nlp.backbones import load_checkpoint

    folder = tiny_bert(tmp_path / "rev", {0: "positive", 1: "negative"})
    tok, model, info = load_checkpoint(str(folder), SST2)
    assert info["label_order"] == [1, 0]
    assert info["labels"] == "0 (positive)=positive, 1 (negative)=negative"
    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = tok(["a gripping film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**enc), plain(**enc).logits[:, [1, 0]])


def test_folder_fingerprint_follows_content(tmp_path):
    from robustbench_nlp.backbones import folder_fingerprint

    folder = tiny_bert(tmp_path / "m")
    fp = folder_fingerprint(folder)
    assert fp["files"] == len([p for p in folder.iterdir() if p.is_file()])
    assert folder_fingerprint(folder) == fp
    (folder / "README.md").write_text("notes")
    with_readme = folder_fingerprint(folder)
    assert with_readme["sha256"] != fp["sha256"]  # a new file (name and size)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["id2label"] = {"0": "positive", "1": "negative"}
    (folder / "config.json").write_text(json.dumps(cfg))
    assert folder_fingerprint(folder)["sha256"] != with_readme["sha256"]


# ------------------------------------------------------------------------- --db check
def test_db_must_be_a_url_or_a_sqlite_path(tmp_path, monkeypatch, capsys):
    from robustbench_nlp.db import open_store

    monkeypatch.chdir(tmp_path)
    expected = ("database 'notaurl' is not a SQLAlchemy URL: expected dialect[+driver]://... "
                "(e.g. sqlite:///rbnlp.db or postgresql+psycopg://user@host/db) or a SQLite "
                "file path ending in .db, .sqlite, .sqlite3")
    with pytest.raises(ConfigError) as e:
        open_store("notaurl")
    assert str(e.value) == expected
    for cmd in (["run"], ["eval", "--model", "x"], ["app"], ["leaderboard"]):
        rc, out, err = cli(capsys, *cmd, "--db", "notaurl")
        assert (rc, out, err) == (2, "", f"error: {expected}")
    assert list(tmp_path.iterdir()) == []  # no SQLite file named notaurl
    for name in ("runs.db", "runs.sqlite", "runs.SQLITE3"):
        store = open_store(name)  # the SQLite shorthand
        assert store.safe_url == f"sqlite:///{name}" and (tmp_path / name).is_file()


def test_run_and_eval_print_the_database_first(capsys, tmp_path, monkeypatch):
    """The first line of ``rbnlp run`` and ``rbnlp eval`` names the database, before the
    runner starts (so before any training)."""
    import robustbench_nlp.evaluate as evaluate
    import robustbench_nlp.runner as runner

    seen = []

    def stop(*args, **kwargs):
        seen.append(capsys.readouterr().out)
        raise ConfigError("stopped")

    monkeypatch.setattr(runner, "execute", stop)
    monkeypatch.setattr(evaluate, "evaluate_model", stop)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", "--db", url, "--no-progress"]) == 2
    assert main(["eval", "--model", str(tmp_path), "--db", url, "--no-progress"]) == 2
    assert seen == [f"database: {url}\n"] * 2


# ------------------------------------------------------------------------------ export
def _exported_run(store, task: str, protocol: bool) -> tuple[str, list[dict]]:
    from robustbench_nlp.attacks.protocol import protocol_hash, run_protocol

    pair = task != "sst2"
    rows = []
    for i, result in enumerate(["successful", "failed", "skipped", "successful"]):
        orig = (f"premise {i}, with \"quotes\"", f"hypothesis {i}") if pair else \
            (f"sentence {i}, with \"quotes\"\tand a tab",)
        adv = (orig[0], f"changed hypothesis {i}") if pair else (f"changed sentence {i}",)
        rows.append({"index": 10 + i, "original": orig,
                     "adversarial": adv if result == "successful" else orig,
                     "attacked_segment": 1 if pair else None, "gold": i % 2,
                     "pred_before": i % 2 if result != "skipped" else 1 - i % 2,
                     "pred_after": 1 - i % 2 if result == "successful" else i % 2,
                     "result": result, "queries": 7 * i, "num_words": 5,
                     "perturbed_words": 1 if result == "successful" else 0,
                     "extra": {"k": i}})
    attack = {"query_budget": None}
    rid = store.create_run(task=task, defense="none", attack="textfooler", model="m", seed=0,
                           config={"run": {}, "attack": attack}, resources={})
    for r in rows:
        store.add_example(rid, r)
    if protocol:
        rec = run_protocol("textfooler", task, attack, {}, [r["index"] for r in rows])
        rec["examples"]["split"] = "stored"  # distinguishable from a recomputed record
        store.update_run(rid, protocol=rec, protocol_hash=protocol_hash(rec))
    store.update_run(rid, status="finished")
    return rid, rows


def _read(path: Path, fmt: str):
    import pandas as pd

    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False).to_dict("records")
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=False).to_dict("records")
    if fmt == "parquet":
        return pd.read_parquet(path).to_dict("records")
    import datasets

    return datasets.load_from_disk(str(path)).to_list()


def _norm(v):
    """A read-back cell as a plain Python value (numpy scalars, NA, CSV's empty cell)."""
    import math

    if hasattr(v, "item"):
        v = v.item()
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "hf"])
def test_export_round_trip(capsys, tmp_path, task, fmt):
    from robustbench_nlp.attacks.protocol import protocol_hash, run_protocol
    from robustbench_nlp.db import open_store
    from robustbench_nlp.tasks import get_task

    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = open_store(url)
    t = get_task(task)
    cols = t.text_columns
    for stored_protocol in (True, False):
        rid, rows = _exported_run(store, task, stored_protocol)
        if stored_protocol:
            record = store.get_run(rid).protocol
        else:  # NULL: computed from the stored rows
            record = run_protocol("textfooler", task, {"query_budget": None}, {},
                                  [r["index"] for r in rows])
        out = tmp_path / f"{rid}.{fmt}"
        rc, printed, err = cli(capsys, "export", rid, "--format", fmt, "--out", out, "--db", url)
        assert (rc, err) == (0, "")
        assert printed.startswith(f"wrote 4 attacked examples of run {rid}")
        back = _read(out, fmt)
        expected = []
        for r in rows:
            e = {"run_id": rid, "task": task, "recipe": "textfooler", "idx": r["index"],
                 **{f"original_{c}": s for c, s in zip(cols, r["original"])},
                 **{f"adversarial_{c}": s for c, s in zip(cols, r["adversarial"])},
                 "attacked_segment": r["attacked_segment"], "gold": r["gold"],
                 "gold_label": t.label_names[r["gold"]], "pred_before": r["pred_before"],
                 "pred_after": r["pred_after"], "result": r["result"], "queries": r["queries"],
                 "num_words": r["num_words"], "perturbed_words": r["perturbed_words"],
                 "extra": json.dumps(r["extra"]), "protocol_hash": protocol_hash(record)}
            expected.append(e)
        assert [list(b)[:-1] for b in back] == [list(e) for e in expected]  # column order
        assert [{k: _norm(v) for k, v in b.items() if k != "protocol"} for b in back] == \
            [{k: _norm(v) for k, v in e.items()} for e in expected]
        assert [json.loads(b["protocol"]) for b in back] == [record] * 4

        train = tmp_path / f"{rid}-train.{fmt}"
        rc, printed, err = cli(capsys, "export", rid, "--format", fmt, "--out", train,
                               "--successful-only", "--db", url)
        assert (rc, err) == (0, "")
        assert printed.startswith(f"wrote 2 successful adversarial examples of run {rid}")
        back = _read(train, fmt)
        wins = [r for r in rows if r["result"] == "successful"]
        assert [list(b)[:len(cols) + 1] for b in back] == [[*cols, "label"]] * 2
        assert [tuple(b[c] for c in cols) for b in back] == [r["adversarial"] for r in wins]
        assert [_norm(b["label"]) for b in back] == [r["gold"] for r in wins]
        assert [tuple(b[f"original_{c}"] for c in cols) for b in back] == \
            [r["original"] for r in wins]
        if fmt == "hf":
            import datasets

            features = datasets.load_from_disk(str(train)).features
            assert features["label"].names == list(t.label_names)


def test_export_bad_input(capsys, tmp_path):
    from robustbench_nlp.db import open_store

    url = f"sqlite:///{tmp_path / 'x.db'}"
    rid, _ = _exported_run(open_store(url), "sst2", True)
    rc, _, err = cli(capsys, "export", rid, "--out", tmp_path / "rows.txt", "--db", url)
    assert (rc, err) == (2, f"error: cannot tell the export format from "
                            f"'{tmp_path / 'rows.txt'}'; pass --format (jsonl|csv|parquet|hf)")
    rc, _, err = cli(capsys, "export", "nope", "--out", tmp_path / "rows.csv", "--db", url)
    assert (rc, err) == (2, f"error: no run with id 'nope' in {url}")
    rc, out, _ = cli(capsys, "export", rid, "--out", tmp_path / "rows.csv", "--db", url)
    assert rc == 0 and "as csv" in out  # the format from the suffix


# ------------------------------------------------------- end to end: real checkpoints
ATTACK = ["--attack", "textfooler", "--num-examples", str(N), "--query-budget", "40",
          "--attack-set", "resources=offline", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, data_dir):
    """The fine-tuned checkpoint and the LoRA adapter (trained on one torch thread)."""
    root = tmp_path_factory.mktemp("checkpoints")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"full": fine_tune_checkpoint(root / "sst2-minilm", data_dir),
                "lora": lora_checkpoint(root / "sst2-minilm-lora", data_dir)}
    finally:
        torch.set_num_threads(threads)


def mini_mirror(root: Path, data_dir, rows: int = 120) -> Path:
    """A GLUE mirror whose SST-2 dev split is the first ``rows`` rows of the real one (its
    other folders linked), so that a test can evaluate "the full dev split" twice cheaply."""
    data_dir = Path(data_dir)
    root.mkdir(parents=True)
    for entry in data_dir.iterdir():
        if entry.name != "glue":
            (root / entry.name).symlink_to(entry)
    (root / "glue" / "sst2").mkdir(parents=True)
    lines = (data_dir / "glue" / "sst2" / "dev.tsv").read_bytes().split(b"\n")
    (root / "glue" / "sst2" / "dev.tsv").write_bytes(b"\n".join(lines[:rows + 1]) + b"\n")
    return root


def direct_acc(folder: Path, data_dir, adapter: bool) -> float:
    """SST-2 dev ACC of a checkpoint with plain ``transformers`` (and ``peft``), its outputs
    named by the ``id2label`` saved in its folder."""
    import numpy as np
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from robustbench_nlp.tasks import load_split

    dev, _ = load_split("sst2", "validation", data_dir)
    tok = AutoTokenizer.from_pretrained(folder)
    id2label = AutoConfig.from_pretrained(folder).id2label
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(
            AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2),
            folder)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder)
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(dev), 64):
            enc = tok(dev["sentence"].tolist()[i:i + 64], padding=True, truncation=True,
                      max_length=64, return_tensors="pt")
            preds += [SST2.index(id2label[int(k)].lower())
                      for k in model(**enc).logits.argmax(-1)]
    return float((np.array(preds) == dev["label"].to_numpy()).mean() * 100)


def _check_evaluated(store, url: str, run_id: str, folder: Path, acc: float, capsys,
                     dev_rows: int = 872):
    from robustbench_nlp.backbones import folder_fingerprint
    from robustbench_nlp.leaderboard import leaderboard

    run = store.get_run(run_id)
    assert run.status == "finished" and run.defense == "none"
    assert run.trainable_params is None and run.train_seconds is None
    assert abs(run.metrics.acc - acc) <= 0.01 and run.metrics.eval_examples == dev_rows
    rows = store.examples(run_id)
    assert len(rows) == N and sorted(r["index"] for r in rows) == list(range(N))
    assert run.metrics.attacked == N and run.protocol_hash
    card = run.backbone["model_card"]
    assert card["name"] == folder.name
    assert card["source"] == {"type": "folder", "path": str(folder.resolve()),
                              **{("fingerprint" if k == "sha256" else k): v
                                 for k, v in folder_fingerprint(folder).items()}}
    assert card["parameters"] > 22_000_000
    board = leaderboard(task="sst2", attack="textfooler", store=store)
    row = board[board["run id"] == run_id]
    assert len(row) == 1 and row["defense"].item() == "none"
    assert row["backbone"].item() == str(folder)
    rc, out, _ = cli(capsys, "leaderboard", "--task", "sst2", "--attack", "textfooler",
                     "--db", url)
    assert rc == 0 and f"| none      |           | {folder}" in out
    rc, out, _ = cli(capsys, "show", run_id, "--db", url)
    assert rc == 0 and out.splitlines()[1].startswith(f"model card: {folder.name} · folder ")
    return run


@pytest.mark.slow
def test_eval_fine_tuned_checkpoint(checkpoints, data_dir, tmp_path, capsys):
    """``rbnlp eval`` on a saved checkpoint (labels reversed and upper-case in its
    id2label): ACC equals plain transformers' on the same checkpoint, N example rows, a
    leaderboard row with defense "none", the model card; ``--paper-url`` etc. on the card."""
    from robustbench_nlp.db import open_store

    folder = checkpoints["full"]
    url = f"sqlite:///{tmp_path / 'e.db'}"
    rc, out, err = cli(capsys, "eval", "--model", folder, "--task", "sst2", *ATTACK,
                       "--db", url, "--data-dir", data_dir, "--paper-url", "https://x.org/p",
                       "--reported-acc", "91.5")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"database: {url}"
    assert lines[1].startswith("run ") and "evaluate-only sst2-minilm on sst2" in lines[1]
    assert "0 (POSITIVE)=positive, 1 (NEGATIVE)=negative" in lines[1]
    store = open_store(url)
    run_id = lines[1].split()[1].rstrip(":")
    run = _check_evaluated(store, url, run_id, folder, direct_acc(folder, data_dir, False),
                           capsys)
    card = run.backbone["model_card"]
    assert (card["paper_url"], card["reported_acc"], card["reported_aua"]) == \
        ("https://x.org/p", 91.5, None)
    assert run.backbone["label_order"] == [1, 0]
    (acc_line,) = [ln for ln in out.splitlines() if ln.startswith("ACC (clean, full dev)")]
    assert acc_line.split()[6] == f"{run.metrics.acc:.2f}"  # "ACC (clean, full dev) [95% CI]"
    # finished: neither command continues it
    rc, _, err = cli(capsys, "run", "--resume", run_id, "--db", url)
    assert (rc, err) == (2, f"error: run {run_id!r} is already finished")


@pytest.mark.slow
def test_eval_peft_adapter_and_resume(checkpoints, data_dir, tmp_path, capsys, monkeypatch):
    """A LoRA adapter folder loads through peft onto its base; interrupted after two
    stored examples, the same command continues the run to N rows (none twice), with ACC
    equal to plain peft + transformers on the adapter. (On a mirror whose SST-2 dev split
    has 120 rows: the clean evaluation runs twice.)"""
    from robustbench_nlp.db import open_store
    from robustbench_nlp.db.store import Store

    folder = checkpoints["lora"]
    url = f"sqlite:///{tmp_path / 'e.db'}"
    data_dir = mini_mirror(tmp_path / "mirror", data_dir)
    args = ["eval", "--model", folder, "--task", "sst2", *ATTACK, "--db", url,
            "--data-dir", data_dir]
    real_add = Store.add_example
    calls = []

    def add_then_stop(self, run_id, r):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(r["index"])
        real_add(self, run_id, r)

    monkeypatch.setattr(Store, "add_example", add_then_stop)
    rc, out, _ = cli(capsys, *args)
    assert rc == 130 and "interrupted: run " in out and "rbnlp eval --resume" in out
    store = open_store(url)
    (stale,) = store.unfinished_runs()
    assert stale.status == "attacking" and len(store.examples(stale.id)) == 2
    monkeypatch.setattr(Store, "add_example", real_add)
    rc, out, err = cli(capsys, *args)
    assert rc == 0, err
    assert f"continuing unfinished run {stale.id} (attacking, 2 examples stored)" in out
    assert f"resuming attack: 2 of {N} examples already stored" in out
    run = _check_evaluated(store, url, stale.id, folder, direct_acc(folder, data_dir, True),
                           capsys, dev_rows=120)
    adapter = run.backbone["model_card"]["adapter"]
    assert adapter["peft_type"] == "LORA" and adapter["base_model"] == minilm_path()
    # without the config.json naming its labels, the adapter's outputs need --label-map
    import shutil

    bare = tmp_path / "adapter-only"
    shutil.copytree(folder, bare)
    (bare / "config.json").unlink()
    rc, out, err = cli(capsys, "eval", "--model", bare, *ATTACK, "--db", url,
                       "--data-dir", data_dir)
    assert (rc, err) == (2, "error: the checkpoint's labels (0=LABEL_0, 1=LABEL_1) do not "
                            "match sst2's (negative, positive); pass --label-map (e.g. "
                            "--label-map 0=negative,1=positive)")


def test_each_kind_of_run_resumes_with_its_own_command(tmp_path):
    from robustbench_nlp.db import open_store
    from robustbench_nlp.evaluate import EvalConfig, evaluate_model
    from robustbench_nlp.runner import RunConfig, execute, merge

    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    ev = store.create_run(task="sst2", defense="none", attack="textfooler", model="m", seed=0,
                          config={"run": {}}, host="nowhere", pid=None)
    tr = store.create_run(task="sst2", defense="peaft", attack="textfooler", model="m", seed=0,
                          config={"run": {}}, host="nowhere", pid=None)
    with pytest.raises(ConfigError) as e:
        execute(RunConfig(), resume=ev, store=store)
    assert str(e.value) == (f"run {ev!r} is an evaluate-only run; continue it with "
                            f"`rbnlp eval --resume {ev}`")
    with pytest.raises(ConfigError, match=f"continue it with `rbnlp eval --resume {ev}`"):
        merge(store, ev)
    with pytest.raises(ConfigError) as e:
        evaluate_model(EvalConfig(model="x"), resume=tr, store=store)
    assert str(e.value) == (f"run {tr!r} trains a defense (peaft); continue it with "
                            f"`rbnlp run --resume {tr}`")
