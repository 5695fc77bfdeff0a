"""Settings of `rolechat serve` (config section `[server]`, environment `ROLECHAT_SERVER_<FIELD>`).

Kept free of FastAPI imports: the CLI builds its flags from this dataclass at start-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rolechat.settings import setting

__all__ = ["ServerConfig"]

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    """Where the API listens, who may call it, and how much it accepts at once."""

    host: str = setting("127.0.0.1", "Address to listen on (0.0.0.0 for all).")
    port: int = setting(8000, "TCP port.")
    api_key: str = setting(
        "",
        "If set, every route but /health needs `Authorization: Bearer <key>`. Prefer the environment "
        "(ROLECHAT_SERVER_API_KEY) or api_key_file to a command-line flag, which other users can see.",
    )
    api_key_file: str = setting("", "A file holding the API key (first line); used when api_key is empty.")
    max_concurrent: int = setting(
        0,
        "Generations run at once; 0 = auto: llm.max_batch in-process (they are decoded together in one batch; "
        "1 for a model whose cache cannot be batched), 64 on the remote backend (llm.backend = openai: the "
        "engine batches them).",
    )
    max_queue: int = setting(256, "Requests that may wait for a generation slot; beyond it the answer is 429.")
    queue_timeout: float = setting(300.0, "Seconds a request may wait for a generation slot before a 429.")
    max_body_bytes: int = setting(2 * 1024 * 1024, "Largest JSON request body (bytes).")
    max_upload_bytes: int = setting(64 * 1024 * 1024, "Largest knowledge-base upload (bytes, all files together).")
    max_messages: int = setting(512, "Most messages (history included) in one request.")
    max_prompt_chars: int = setting(
        131072, "Most characters in all messages of one request (checked before tokenizing)."
    )
    max_prompt_tokens: int = setting(
        32768, "Most tokens in all messages of one request (longer histories are refused, not trimmed)."
    )

    def __post_init__(self) -> None:
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"server.port must be 1-65535, got {self.port}")
        if self.max_concurrent < 0:
            raise ValueError(f"server.max_concurrent must be >= 0 (0 = auto), got {self.max_concurrent}")
        for name in ("max_body_bytes", "max_upload_bytes", "max_messages", "max_prompt_chars"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"server.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise ValueError(f"server.max_queue must be >= 0, got {self.max_queue}")
        if not self.queue_timeout > 0:
            raise ValueError(f"server.queue_timeout must be > 0 seconds, got {self.queue_timeout}")
        if self.max_prompt_tokens < 1:
            raise ValueError(f"server.max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.api_key != self.api_key.strip():
            # ROLECHAT_SERVER_API_KEY=$(cat key) keeps a newline that no client can ever send in a header
            log.warning("server.api_key has whitespace around it: trimmed (clients send the key without it)")
            self.api_key = self.api_key.strip()
        if any(c.isspace() for c in self.api_key):
            raise ValueError("server.api_key must not contain whitespace (an Authorization header cannot carry it)")
        if not self.api_key and self.api_key_file:
            self.key()  # fail at start-up, naming the file, not on the first request

    def key(self) -> str:
        """The API key in force: `api_key`, else the first line of `api_key_file`, else "" (no auth)."""
        if self.api_key or not self.api_key_file:
            return self.api_key
        path = Path(self.api_key_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"server.api_key_file: cannot read {path}: {exc}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise ValueError(f"server.api_key_file: {path} is empty")
        if any(c.isspace() for c in key):
            raise ValueError(f"server.api_key_file: the key in {path} contains whitespace")
        return key
