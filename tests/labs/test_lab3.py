"""Lab 3's model and repositories: a real transformers classifier, exported and served by a real Triton."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonlab.labs import lab3
from tritonlab.model_config import validate
from tritonlab.server import start_server


@pytest.fixture(scope="module")
def clf() -> lab3.TextClassifier:
    return lab3.build_classifier()


@pytest.fixture(scope="module")
def repo(clf, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lab3") / "repo"
    lab3.prepare_repository(root, clf)
    lab3.export_torchscript(clf, root / "classifier" / "1" / "model.pt")
    return root


def test_the_model_is_built_here_the_same_every_time(clf):
    again = lab3.build_classifier()
    np.testing.assert_array_equal(clf.logits(lab3.SAMPLE_TEXTS), again.logits(lab3.SAMPLE_TEXTS))
    encoded = clf.encode(["a wonderful film", "zzz qqq"])
    assert encoded["input_ids"].shape == (2, lab3.SEQ_LEN) and encoded["input_ids"].dtype == np.int64
    assert clf.backend_tokenizer.encode("a wonderful film").tokens[:5] == ["[CLS]", "a", "wonderful", "film", "[SEP]"]
    assert encoded["attention_mask"][0].sum() == 5  # CLS a wonderful film SEP, the rest is padding
    assert clf.model.config.vocab_size == clf.backend_tokenizer.get_vocab_size()


def test_another_seed_gives_another_model(clf):
    other = lab3.build_classifier(seed=1)
    assert not np.allclose(clf.logits(lab3.SAMPLE_TEXTS), other.logits(lab3.SAMPLE_TEXTS))


def test_torchscript_export_keeps_argument_names_and_generalises_over_batch_and_padding(clf, repo):
    model_pt = repo / "classifier" / "1" / "model.pt"
    assert lab3.torchscript_argument_names(model_pt) == ["input_ids", "attention_mask"]
    for texts in (lab3.SAMPLE_TEXTS[:1], lab3.SAMPLE_TEXTS, lab3.SAMPLE_TEXTS * 3):
        got = lab3.torchscript_logits(model_pt, clf.encode(texts))
        np.testing.assert_allclose(got, clf.logits(texts), atol=lab3.TOLERANCE["fp32"])


def test_the_trace_records_no_device_and_runs_in_float16(clf, repo):
    import torch

    module = torch.jit.load(str(repo / "classifier" / "1" / "model.pt"))
    assert 'Device = prim::Constant[value="cpu"]' not in str(module.inlined_graph)  # else it fails on a GPU
    encoded = clf.encode(lab3.SAMPLE_TEXTS)
    half = lab3.torchscript_logits(repo / "classifier" / "1" / "model.pt", encoded, precision="fp16")
    np.testing.assert_allclose(half, clf.logits(lab3.SAMPLE_TEXTS), atol=lab3.TOLERANCE["fp16"])


def test_both_targets_write_valid_repositories_from_one_config_function(clf, tmp_path):
    for target, key, value in (("embedded", "backend", "python"), ("container", "platform", "pytorch_libtorch")):
        root = lab3.prepare_repository(tmp_path / target, clf, target=target)
        lab3.export_torchscript(clf, root / "classifier" / "1" / "model.pt")
        report = validate(root)
        assert report.valid, [str(f) for f in report.errors]
        config = text_format.Parse((root / "classifier" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert getattr(config, key) == value
        assert [i.name for i in config.input] == ["input_ids", "attention_mask"]
        assert (root / "classifier" / "1" / "model.py").exists() == (target == "embedded")


def test_variant_settings_round_trip_through_the_config(clf):
    variant = lab3.Variant("v", max_queue_delay_us=500, preferred_batch_size=[8, 16], instances=2)
    config = lab3.config_json(lab3.classifier_config(variant=variant, kind="gpu"))
    assert config["instance_group"][0]["kind"] == "KIND_GPU"
    assert lab3.Variant.from_config("v", config) == variant
    plain = lab3.config_json(lab3.classifier_config(variant=lab3.Variant("none")))
    assert "dynamic_batching" not in plain and lab3.Variant.from_config("none", plain) == lab3.Variant("none")


def test_the_ensemble_answers_like_the_in_process_model_and_variants_reload(clf, repo):
    texts = np.array([[t] for t in lab3.SAMPLE_TEXTS], dtype=object)
    with start_server(repo, model_control_mode="explicit") as server:
        server.load_model(lab3.ENSEMBLE)
        request = grpcclient.InferInput("TEXT", list(texts.shape), "BYTES")
        request.set_data_from_numpy(texts)
        answer = server.grpc_client().infer(lab3.ENSEMBLE, [request])
        np.testing.assert_allclose(answer.as_numpy("LOGITS"), clf.logits(lab3.SAMPLE_TEXTS), atol=1e-4)
        labels = [x.decode() for x in answer.as_numpy("LABEL").ravel()]
        assert labels == [label for label, _ in clf.predict(lab3.SAMPLE_TEXTS)]

        variant = lab3.Variant("two", max_queue_delay_us=300, preferred_batch_size=[4], instances=2)
        lab3.load_variant(server, variant)
        assert lab3.loaded_variant(server).same_settings(variant)
        memory = lab3.memory_report(server)
        assert sorted(memory["instance_rss_bytes"]) == ["classifier_0_0", "classifier_0_1"]
        assert all(rss > clf.parameter_bytes for rss in memory["instance_rss_bytes"].values())
        assert memory["gpu_memory_used_bytes"] == {}
