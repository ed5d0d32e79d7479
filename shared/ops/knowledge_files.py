"""Reading a profiles file's knowledge documents: every check before anything is written.

A document that is missing, outside the profiles file's folder, too large,
empty, binary, not UTF-8, an unreadable or encrypted PDF, or a business whose
documents make too many chunks, stops the whole apply with the business and
the file named, as every other profile error does: nothing of that apply is
written. PDFs are read with pypdf (text layer only: a scanned page has none,
and says so).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from shared.config import Settings
from shared.domain.knowledge import KnowledgeSource
from shared.domain.knowledge_chunks import Chunk, chunk_blocks, parse_markdown, parse_pages, parse_text, title_from_path
from shared.domain.knowledge_html import parse_html
from shared.domain.profiles import BusinessProfile, ProfileError


@dataclass(frozen=True)
class Document:
    """One document as read: where it is, what it is called, the hash of its bytes and its chunks."""

    source: str
    title: str
    sha256: str
    chunks: tuple[Chunk, ...]


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} bytes"


def _decoded(data: bytes) -> str:
    if b"\x00" in data:
        raise ValueError("is binary (it has NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         "save it as UTF-8") from None


def _pdf_pages(data: bytes) -> tuple[str, list[str]]:
    """The metadata title and the text of each page of a PDF."""
    if not data.startswith(b"%PDF-"):
        raise ValueError("is not a PDF (it does not start with %PDF-)")
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise ValueError("is an encrypted PDF; save a copy without a password")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str((reader.metadata or {}).get("/Title") or "").strip()
    except (PyPdfError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ValueError(f"is not a readable PDF ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not any(page.strip() for page in pages):
        raise ValueError("is a PDF without a text layer (a scan?): nothing can be read from it")
    return title, pages


def read_document(base: Path, source: KnowledgeSource, settings: Settings) -> Document:
    """One document, checked and chunked; ``ValueError`` says what is wrong with it."""
    root = base.resolve()
    path = (root / source.path).resolve()
    if root not in path.parents:
        raise ValueError(f"resolves to {path}, outside {root}, the profiles file's folder")
    if not path.exists():
        raise ValueError(f"does not exist (looked for {path})")
    if not path.is_file():
        raise ValueError(f"is not a file ({path})")
    size = path.stat().st_size
    if size > settings.knowledge_max_document_bytes:
        raise ValueError(f"is {_size(size)}, larger than {_size(settings.knowledge_max_document_bytes)} "
                         "(KNOWLEDGE_MAX_DOCUMENT_BYTES)")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError("is empty")
    if source.kind == "pdf":
        found_title, pages = _pdf_pages(data)
        blocks = parse_pages(pages)
    else:
        text = _decoded(data)
        if source.kind == "markdown":
            found_title, blocks = parse_markdown(text)
        elif source.kind == "html":
            found_title, blocks = parse_html(text)
        else:
            found_title, blocks = "", parse_text(text)
    title = source.title or found_title or title_from_path(source.path)
    chunks = tuple(chunk_blocks(source.path, title, blocks, settings.knowledge_chunk_chars))
    if not chunks:
        raise ValueError("has no text")
    return Document(source.path, title, hashlib.sha256(data).hexdigest(), chunks)


def read_knowledge(profiles: Mapping[str, BusinessProfile], base: Path,
                   settings: Settings) -> dict[str, tuple[Document, ...]]:
    """Every business's documents, read and chunked; the first problem found stops it, named."""
    out: dict[str, tuple[Document, ...]] = {}
    for address, profile in profiles.items():
        documents = []
        for source in profile.knowledge:
            try:
                documents.append(read_document(base, source, settings))
            except ValueError as exc:
                raise ProfileError(f"business {address!r}: knowledge document {source.path!r} {exc}") from None
        total = sum(len(d.chunks) for d in documents)
        if total > settings.knowledge_max_chunks:
            largest = max(documents, key=lambda d: len(d.chunks))
            raise ProfileError(
                f"business {address!r}: its knowledge documents make {total} chunks, at most "
                f"{settings.knowledge_max_chunks} (KNOWLEDGE_MAX_CHUNKS); the largest is {largest.source!r} "
                f"with {len(largest.chunks)}"
            )
        out[address] = tuple(documents)
    return out


def knowledge_summary(documents: Mapping[str, tuple[Document, ...]]) -> str:
    """``; 6 knowledge documents, 17 chunks`` for profiles-validate, or nothing when there are none."""
    count = sum(len(docs) for docs in documents.values())
    chunks = sum(len(d.chunks) for docs in documents.values() for d in docs)
    return f"; {count} knowledge document(s), {chunks} chunk(s)" if count else ""
