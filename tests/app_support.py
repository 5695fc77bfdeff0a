"""Helpers for the Streamlit app tests: an AppTest of app.py on a tiny model, fake embeddings, persona adapters,
a small document folder. Not a conftest: the app tests import what they use.
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
TIMEOUT = 180  # the first run in a process imports torch/transformers and loads the model

DOCS = {
    "beijing.md": "# 北京\n\n北京是中华人民共和国的首都，故宫和长城都在北京附近。\n",
    "shanghai.md": "# 上海\n\n上海是一座国际化大都市，外滩和东方明珠在黄浦江边。\n",
}


def use_fake_embeddings(monkeypatch) -> None:
    """Deterministic fake vectors instead of the real embedder (retrieval tests use BM25, which is real)."""
    from langchain_core.embeddings import DeterministicFakeEmbedding

    import ui.kb

    monkeypatch.setattr(ui.kb, "embeddings", lambda: DeterministicFakeEmbedding(size=64))


def serve_on(monkeypatch, address: str | None) -> None:
    """Make Streamlit's `server.address` read `address` for this test (as `--server.address` would)."""
    from streamlit import config

    config.get_option("server.address")  # parse the config files first, so they don't overwrite this later
    monkeypatch.setattr(config.get_config_options()["server.address"], "_get_val_func", lambda: address)


def app_test(
    monkeypatch,
    model: Path | str,
    *,
    sample_dir: Path | None = None,
    greedy: bool = True,
    address: str | None = "127.0.0.1",
) -> AppTest:
    """app.py on `model`, in the test's own ROLECHAT_HOME, with short greedy replies by default, served on
    `address` (loopback, as .streamlit/config.toml sets it, whatever folder pytest runs from)."""
    serve_on(monkeypatch, address)
    monkeypatch.setenv("ROLECHAT_LLM_MODEL", str(model))
    if greedy:
        monkeypatch.setenv("ROLECHAT_LLM_TEMPERATURE", "0")
        monkeypatch.setenv("ROLECHAT_LLM_MAX_NEW_TOKENS", "12")
    if sample_dir is None:
        monkeypatch.setenv("ROLECHAT_APP_SAMPLE_KB", "false")
    else:
        monkeypatch.setenv("ROLECHAT_APP_SAMPLE_DIR", str(sample_dir))
    use_fake_embeddings(monkeypatch)
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def loaded_runtime():
    """The runtime the app loaded (the same cached object), for computing expected replies."""
    from ui import state

    return state._load_runtime(state._runtime_key())


def write_docs(folder: Path, docs: dict[str, str] = DOCS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def make_adapter(base: Path, out: Path, seed: int, *, display_name: str = "", system: str = "") -> Path:
    """A LoRA adapter with random non-zero weights (so it changes the replies) and its persona.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rolechat.llm import PersonaManifest, fingerprint

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.save_pretrained(out)
    PersonaManifest(
        name=out.name,
        display_name=display_name or out.name,
        system_prompt=system,
        base_model=str(Path(base).resolve()),
        base_fingerprint=fingerprint(model.config),
    ).save(out)
    return out


def assistant_texts(at: AppTest) -> list[str]:
    return [m["content"] for m in at.session_state["history"] if m["role"] == "assistant"]
