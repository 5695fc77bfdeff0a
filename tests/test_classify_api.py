"""`POST /v1/classify` on the API app (tiny BERT classifier; runtime on the tiny Qwen2)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rolechat.api import ServerConfig, create_app
from rolechat.llm import LLMConfig, Runtime
from tests.classify_support import build_tiny_bert, install, train_sample


@pytest.fixture(scope="session")
def sample_classifier(tmp_path_factory):
    bert = build_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")
    return train_sample(tmp_path_factory.mktemp("clf"), bert)


@pytest.fixture
def client(tiny_qwen2, sample_classifier):
    install(sample_classifier)
    app = create_app(Runtime.load(LLMConfig(model=str(tiny_qwen2))), ServerConfig(api_key="k"))
    with TestClient(app, headers={"Authorization": "Bearer k"}) as c:
        yield c


def test_classify_route_returns_labels_and_probabilities(client):
    r = client.post("/v1/classify", json={"model": "sentiment", "input": ["这本书很好推荐", "快递很差退货"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == ["neg", "pos"] and [d["label"] for d in body["data"]] == ["pos", "neg"]
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert sum(body["data"][0]["probabilities"].values()) == pytest.approx(1.0)
    one = client.post("/v1/classify", json={"model": "sentiment", "input": "这本书很好推荐"}).json()
    assert one["data"][0]["probabilities"] == pytest.approx(body["data"][0]["probabilities"], abs=1e-5)


def test_bad_requests_get_4xx_in_the_api_error_shape(client):
    missing = client.post("/v1/classify", json={"model": "nope", "input": "好"})
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "model" and "nope" in missing.json()["error"]["message"]
    assert "sentiment" in missing.json()["error"]["message"]  # the classifiers there are, by name
    assert "/" not in missing.json()["error"]["message"]  # no server folder
    extra = client.post("/v1/classify", json={"model": "sentiment", "input": "好", "temperature": 0})
    assert extra.status_code == 400 and extra.json()["error"]["code"] == "unknown_parameter"
    assert extra.json()["error"]["param"] == "temperature"
    assert client.post("/v1/classify", json={"model": "/etc", "input": "好"}).status_code == 404  # names only
    assert client.post("/v1/classify", json={"model": "sentiment", "input": []}).status_code == 400
    assert client.post("/v1/classify", json={"model": "sentiment", "input": ["好", " "]}).status_code == 400
    assert client.post("/v1/classify", json={"model": "sentiment"}).status_code in (400, 422)
    unauthorised = client.post(
        "/v1/classify", json={"model": "sentiment", "input": "好"}, headers={"Authorization": "x"}
    )
    assert unauthorised.status_code == 401
