"""Attack protocols (attacks/protocol.py): the record, its hash and what makes two differ."""

from __future__ import annotations

import hashlib

from robustbench_nlp.attacks.protocol import (canonical_json, describe_protocol, example_set,
                                              index_ranges, protocol_differences,
                                              protocol_hash, protocol_record, run_protocol)

TF_OPTIONS = {"resources": "auto", "query_budget": None, "max_candidates": 50,
              "min_cos_sim": 0.5, "use_threshold": 0.840845057, "attacked_column": None,
              "embedding": "counterfitted-glove-50d"}
RESOURCES = {"mode": "offline",
             "embedding": {"name": "counterfitted-glove-50d", "fingerprint": "f17f1cf4" + "0" * 56,
                           "neighbours": 100, "description": "GloVe 6B 50d ..."},
             "pos_tagger": {"name": "SpacyPartOfSpeech", "tagger": "spacy 3.8.0"}}


def test_index_ranges_and_example_set():
    assert index_ranges([7, 0, 1, 2, 5, 8, 2]) == "0-2,5,7-8"
    assert index_ranges([]) == ""
    ex = example_set("sst2", "validation", range(100))
    assert ex["count"] == 100 and ex["indices"] == "0-99"
    assert ex["indices_sha256"] == hashlib.sha256(
        ",".join(str(i) for i in range(100)).encode()).hexdigest()
    # order and duplicates do not matter; another set does
    assert example_set("sst2", "validation", [2, 1, 0, 1]) == example_set("sst2", "validation",
                                                                          [0, 1, 2])
    assert example_set("sst2", "validation", [0, 1, 3]) != example_set("sst2", "validation",
                                                                       [0, 1, 2])


def test_record_canonical_form_and_hash():
    rec = protocol_record("textfooler", {"query_budget": 200, "max_candidates": 50},
                          {"mode": "offline", "embedding": {"name": "e", "fingerprint": "ab",
                                                            "source": "/home/me/e.bin"}},
                          {"task": "sst2", "split": "validation", "count": 2})
    # the location of a resource ("source") is not part of the protocol; keys sorted
    assert canonical_json(rec) == (
        '{"examples":{"count":2,"split":"validation","task":"sst2"},'
        '"options":{"max_candidates":50,"query_budget":200},"recipe":"textfooler",'
        '"resources":{"embedding":{"fingerprint":"ab","name":"e"},"mode":"offline"}}')
    assert protocol_hash(rec) == hashlib.sha256(canonical_json(rec).encode()).hexdigest()[:10]
    moved = protocol_record("textfooler", {"max_candidates": 50, "query_budget": 200},
                            {"mode": "offline", "embedding": {"name": "e", "fingerprint": "ab",
                                                              "source": "/elsewhere/e.bin"}},
                            {"task": "sst2", "split": "validation", "count": 2})
    assert protocol_hash(moved) == protocol_hash(rec)


def test_stored_textfooler_run_protocol_resolves_defaults():
    idx = range(100)
    old = run_protocol("textfooler", "sst2", TF_OPTIONS, RESOURCES, idx)
    # a run stored before preserve_polarity existed did not apply the constraint
    explicit = run_protocol("textfooler", "sst2", {**TF_OPTIONS, "preserve_polarity": False},
                            RESOURCES, idx)
    assert old == explicit
    assert old["options"]["preserve_polarity"] is False
    assert "resources" not in old["options"]  # the requested mode; the resolved one is kept
    assert old["resources"]["mode"] == "offline"
    assert "description" not in old["resources"]["embedding"]
    on = run_protocol("textfooler", "sst2", {**TF_OPTIONS, "preserve_polarity": True},
                      RESOURCES, idx)
    assert protocol_differences(old, on) == ["options.preserve_polarity"]
    budget = run_protocol("textfooler", "sst2", {**TF_OPTIONS, "query_budget": 300}, RESOURCES,
                          range(50))
    assert protocol_differences(old, budget) == [
        "examples.count", "examples.indices", "examples.indices_sha256", "options.query_budget"]


def test_pair_task_attacked_column_is_resolved():
    a = run_protocol("textfooler", "rte", TF_OPTIONS, RESOURCES, range(10))
    b = run_protocol("textfooler", "rte", {**TF_OPTIONS, "attacked_column": "sentence2"},
                     RESOURCES, range(10))
    c = run_protocol("textfooler", "rte", {**TF_OPTIONS, "attacked_column": "sentence1"},
                     RESOURCES, range(10))
    assert a == b and a["options"]["attacked_column"] == "sentence2"
    assert protocol_differences(a, c) == ["options.attacked_column"]


def test_advglue_protocol_ignores_where_the_data_was_read():
    res = {"mode": "fixed-examples", "advglue": {"source": "local:/x/dev.json", "sha256": "dd"}}
    a = run_protocol("advglue", "sst2", {"threshold": 62.0, "limit": None, "data_dir": "/x"},
                     res, range(148))
    b = run_protocol("advglue", "sst2", {"threshold": 62.0, "limit": None, "data_dir": None},
                     {**res, "advglue": {"source": "hub:adv_glue", "sha256": "dd"}}, range(148))
    assert a == b and a["examples"]["split"] == "advglue-dev"
    assert describe_protocol(a) == ("advglue · limit=None, threshold=62.0 · advglue@dd · "
                                    "sst2/advglue-dev, 148 examples (0-147)")


def test_unknown_plugin_keeps_its_stored_options():
    rec = run_protocol("not-installed", "sst2", {"k": 1}, {}, [3])
    assert rec["options"] == {"k": 1} and rec["examples"]["indices"] == "3"
