"""The app's classifier page (AppTest) and classifier training started from the training page's code."""

from __future__ import annotations

import time

import pytest

from tests.app_support import app_test
from tests.classify_support import build_tiny_bert, install, synthetic_rows, train_sample, write_csv


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


@pytest.fixture(scope="session")
def sample_classifier(tmp_path_factory, tiny_bert):
    return train_sample(tmp_path_factory.mktemp("clf"), tiny_bert)


def test_classifier_page_labels_typed_texts(monkeypatch, tiny_qwen2, sample_classifier):
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.switch_page("ui/pages/classify.py").run()
    assert not at.exception
    assert any("rolechat train-classifier" in i.value for i in at.info)  # none yet: how to make one
    install(sample_classifier)
    at.run()
    assert at.selectbox(key="clf_name").value == "sentiment"
    at.text_area(key="clf_texts").set_value("这本书很好推荐\n快递很差退货\n").run()
    at.button(key="clf_run").click().run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["标签"]) == ["pos", "neg"]
    assert set(frame.columns) >= {"文本", "概率", "neg", "pos"}


def test_training_page_starts_a_classifier_run_and_follows_it(tiny_bert, tmp_path):
    from ui import train

    data = write_csv(tmp_path / "d.csv", synthetic_rows(40))
    job = train.start_classifier(data, "bg", hparams={"model": str(tiny_bert), "max_steps": 2, "eval_ratio": 0.2})
    assert job.task == "classify" and job.cmd[3:8] == ["train-classifier", "--data", str(data), "--name", "bg"]
    deadline = time.time() + 300
    while train.alive(job.pid) and time.time() < deadline:
        time.sleep(1)
    run = train.view(job)
    assert run.state == "done", run.log_tail
    assert [j.task for j in train.jobs()] == ["classify"]
    from rolechat.settings import classifiers_dir

    assert (classifiers_dir() / "bg" / "confusion.png").is_file()


def test_tone_check_labels_each_new_reply(monkeypatch, sample_classifier):
    from rolechat.llm.demo import demo_model_path

    install(sample_classifier)
    at = app_test(monkeypatch, demo_model_path()).run()  # its replies are words, not the tiny model's blanks
    assert at.selectbox(key="tone_clf").value is None  # off until picked
    at.selectbox(key="tone_clf").set_value("sentiment").run()
    at.chat_input[0].set_value("你好").run()
    assert not at.exception
    meta = [c.value for c in at.caption if "语气：" in c.value]
    assert len(meta) == 1 and ("语气：pos" in meta[0] or "语气：neg" in meta[0])
