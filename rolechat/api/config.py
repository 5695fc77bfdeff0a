"""Settings of `rolechat serve` (config section `[server]`, environment `ROLECHAT_SERVER_<FIELD>`).

Kept free of FastAPI imports: the CLI builds its flags from this dataclass at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """`rolechat serve` settings (config section `[server]`)."""

    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0 for all)."})
    port: int = field(default=8000, metadata={"help": "TCP port."})
    api_key: str = field(default="", metadata={"help": "If set, requests need `Authorization: Bearer <key>`."})

    def __post_init__(self) -> None:
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"server.port must be 1-65535, got {self.port}")
