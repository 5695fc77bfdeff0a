"""Real engines: vLLM's CPU build serves the demo model and two persona adapters, started on loopback with the
command `rolechat export vllm` prints.

- rolechat on the remote backend gives, for the base model, each persona and a prompt-only character, the same
  greedy reply as in-process, one at a time and all at once;
- the scale-out path of docs/api.md ("Past one machine"): `rolechat serve` in front of that vLLM server and of a
  Chroma server holding a knowledge base that `rolechat index` filled, all three configured by one rolechat.toml,
  answers the OpenAI client from the knowledge base and as a persona.

vLLM lives in its own virtual environment (it pins another transformers): `.ci/run` installs it into
`.venv-vllm` (or set ROLECHAT_VLLM_PYTHON). Without it the tests are skipped with that message. One vLLM server
serves both tests (it takes a minute or two to start).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rolechat.llm import LLMConfig, Runtime, load_runtime
from rolechat.llm.demo import DEMO_MODEL_ID, SAMPLE_PERSONAS_DIR, demo_model_path
from rolechat.llm.export import serving_plan
from tests.app_support import make_adapter
from tests.servers import NO_VLLM, ROOT, VLLM_PYTHON, chroma_server, free_port, rolechat_serve, vllm_server

PROMPTS = ["你好", "你是谁", "怎么训练一个角色？"]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason=NO_VLLM)]


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    """(demo model folder, vLLM's API root, the folder holding the second adapter `zhuzhu`)."""
    model = demo_model_path()
    root = tmp_path_factory.mktemp("personas")
    folder = make_adapter(model, root / "zhuzhu", 7, system="你是竹竹。")
    manifest = json.loads((folder / "persona.json").read_text(encoding="utf-8"))
    (folder / "persona.json").write_text(json.dumps({**manifest, "base_model": DEMO_MODEL_ID}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:  # the plan reads $ROLECHAT_HOME/personas too: an empty one
        mp.setenv("ROLECHAT_HOME", str(tmp_path_factory.mktemp("home")))
        plan = serving_plan(LLMConfig(model=str(model), persona_dirs=[str(root)]))
    assert {"miaomiao", "zhuzhu"} <= set(plan.adapters)
    with vllm_server(plan.vllm_command(port=free_port(), dtype="float32"), tmp_path_factory.mktemp("vllm")) as url:
        yield model, url, root


def test_remote_greedy_replies_equal_in_process_for_the_base_model_and_every_persona(vllm):
    model, url, root = vllm
    local = Runtime.load(LLMConfig(model=str(model), persona_dirs=[str(root)]))
    remote = load_runtime(LLMConfig(model=str(model), backend="openai", base_url=url, persona_dirs=[str(root)]))
    assert SAMPLE_PERSONAS_DIR.is_dir()
    names = remote.persona_names()
    assert {"base", "miaomiao", "zhuzhu"} <= set(names) and names == local.persona_names()
    characters = [n for n in names if n not in ("base", "miaomiao", "zhuzhu")]  # prompt-only sample characters
    params = {"temperature": 0, "max_new_tokens": 48}
    expected = {}
    for persona in ["base", "miaomiao", "zhuzhu", *characters[:1]]:
        for prompt in PROMPTS:
            messages = [{"role": "user", "content": prompt}]
            expected[persona, prompt] = local.chat(messages, persona, params)
            assert remote.chat(messages, persona, params) == expected[persona, prompt], (persona, prompt)
    # Concurrently, so vLLM batches base rows with persona rows: with as many LoRA slots as adapters, its CPU
    # kernels gave base rows the last slot's adapter (index -1); the exported --max-loras keeps a slot spare.
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(persona, prompt) for _ in range(4) for persona in ("base", "miaomiao", "zhuzhu") for prompt in PROMPTS]
    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(lambda j: remote.chat([{"role": "user", "content": j[1]}], j[0], params), jobs))
    wrong = [(job, reply) for job, reply in zip(jobs, replies) if reply != expected[job]]
    assert not wrong, f"{len(wrong)} of {len(jobs)} concurrent replies differ from in-process: {wrong[:3]}"


def rolechat(*args: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROLECHAT_HOME": str(home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rolechat", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_serve_fronts_vllm_and_a_chroma_server_for_the_openai_client(vllm, tmp_path, _isolated_home):
    import chromadb
    import openai

    from rolechat.conversation import Engine
    from rolechat.conversation.session import Session
    from rolechat.rag.store import collection_name

    model, url, _ = vllm
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "值班.md").write_text("# 值班安排\n\n周末值班由运维组负责，值班电话是 4008-123-456。", encoding="utf-8")
    (docs / "报销.md").write_text("# 报销流程\n\n差旅报销需要在出差结束后十五天内提交发票。", encoding="utf-8")
    with chroma_server(tmp_path / "chroma") as chroma:
        config = f'[llm]\nmodel = "{model}"\nbackend = "openai"\nbase_url = "{url}"\n\n[rag]\nchroma_url = "{chroma}"\n'
        (_isolated_home / "rolechat.toml").write_text(config, encoding="utf-8")
        indexed = rolechat("index", str(docs), "--kb", "团队", "--json", home=_isolated_home)
        assert indexed.returncode == 0, indexed.stderr
        chunks = json.loads(indexed.stdout)["chunks_added"]
        assert not (_isolated_home / "kb" / "团队" / "chroma").exists()  # the vectors are the server's
        server = chromadb.HttpClient(host="127.0.0.1", port=int(chroma.rsplit(":", 1)[1]))
        assert server.get_collection(collection_name("团队")).count() == chunks >= 2

        local = Runtime.load(LLMConfig(model=str(model)))  # the same personas as the server's home: the samples
        with rolechat_serve(_isolated_home, tmp_path / "serve") as front:
            client = openai.OpenAI(base_url=f"{front}/v1", api_key="unused", max_retries=0)
            assert {"base", "miaomiao"} <= {m.id for m in client.models.list()}
            question = [{"role": "user", "content": "周末值班电话是多少？"}]
            answer = client.chat.completions.create(
                model="base", messages=question, temperature=0, extra_body={"knowledge_base": "团队"}
            )
            assert "4008-123-456" in answer.choices[0].message.content  # quoted from the document (extract mode)
            assert answer.model_extra["sources"][0]["file"] == "值班.md"
            hello = [{"role": "user", "content": "你好"}]
            reply = client.chat.completions.create(model="miaomiao", messages=hello, temperature=0, max_tokens=48)
            alone = Session(Engine(local), persona="miaomiao", params={"temperature": 0, "max_new_tokens": 48})
            alone.say("你好")
            assert reply.choices[0].message.content == alone.reply().stream.join()  # vLLM's reply, as in-process
