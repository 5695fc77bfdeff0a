"""Chroma: one collection per knowledge base, in a local folder or on a Chroma server, never with Chroma's
default embedding function (it would try to download a model): vectors always come from our embedder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["collection_name", "open_client", "open_collection", "all_ids", "MAX_BATCH"]

MAX_BATCH = 4000  # Chroma rejects adds above ~5461 records


def collection_name(kb_name: str) -> str:
    """A valid Chroma collection name (3-512 chars of [a-zA-Z0-9._-], alphanumeric ends) for any KB name.

    ASCII-safe names keep their readable form; any other name (e.g. Chinese) gets a readable ASCII part
    plus a hash of the full name, so different names never collide and the mapping is deterministic.
    """
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", kb_name).strip("-_.")[:48]
    digest = hashlib.sha256(kb_name.encode("utf-8")).hexdigest()[:10]
    return f"kb-{slug}-{digest}" if slug else f"kb-{digest}"


def open_client(chroma_url: str, local_path: Path):
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if chroma_url:
        url = urlparse(chroma_url)
        port = url.port or (443 if url.scheme == "https" else 8000)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1", port=port, ssl=url.scheme == "https", settings=settings
        )
    local_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(local_path), settings=settings)


def open_collection(client, name: str, create: bool = True):
    """The collection, cosine space, with no embedding function attached."""
    if create:
        return client.get_or_create_collection(name, embedding_function=None, metadata={"hnsw:space": "cosine"})
    return client.get_collection(name, embedding_function=None)


def all_ids(collection) -> set[str]:
    ids: set[str] = set()
    offset, page = 0, 20000
    while True:
        got = collection.get(include=[], limit=page, offset=offset)["ids"]
        ids.update(got)
        if len(got) < page:
            return ids
        offset += page
