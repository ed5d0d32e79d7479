"""A business's knowledge: the profile keys that name its documents, and the set profiles-apply stored.

Three profile keys (docs/features.md, "Knowledge base"):

``knowledge``
    The business's documents, paths relative to the profiles file: a path, or
    ``{file: PATH, title: TITLE}`` to name the source the bot cites.
``knowledge_only``
    When no chunk is close enough to the question, answer ``unknown_reply``
    (and offer the handoff, if the profile has one) instead of letting the
    model guess.
``unknown_reply``
    That answer.

The keys are checked here for shape only; whether each file exists, is small
enough, is text and decodes is checked where the files are read
(shared/ops/knowledge_files.py), before anything is written. What
profiles-apply stored for a business (its *knowledge set*: which version of
the chunks is live, embedded with which model) comes back with the stored
profile, so a message pays no extra read to know whether to retrieve. Pure:
no I/O.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from shared.domain.entry import MessageEntry

# file extension -> how the document is read
DOCUMENT_TYPES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
MAX_DOCUMENTS = 50
MAX_TITLE_CHARS = 200
MAX_PATH_CHARS = 300
# The same bound as every other text a profile sets (a WhatsApp message).
MAX_UNKNOWN_REPLY_CHARS = 1600
DEFAULT_UNKNOWN_REPLY = "I'm sorry, I don't have that information."
KNOWLEDGE_KEYS = frozenset({"knowledge", "knowledge_only", "unknown_reply"})

Fail = Callable[[str, str], Exception]


@dataclass(frozen=True)
class KnowledgeSource:
    """One document of a business: its path relative to the profiles file, and the title it is cited by."""

    path: str
    title: str = ""

    @property
    def kind(self) -> str:
        return DOCUMENT_TYPES[posixpath.splitext(self.path)[1].lower()]


@dataclass(frozen=True)
class StoredDocument:
    """What the knowledge set says of one document: where it came from, its title and how many chunks."""

    source: str
    title: str
    chunks: int
    sha256: str


@dataclass(frozen=True)
class KnowledgeSet:
    """The chunks of one business that are live: one version, all written before it was switched on.

    ``previous`` is the version live before this one, kept until the next
    apply so a process still holding the older profile finds whole chunks.
    """

    version: str
    model: str
    dimensions: int
    chunks: int
    documents: tuple[StoredDocument, ...] = ()
    previous: str = ""
    switched_at: datetime | None = None

    @property
    def searchable(self) -> bool:
        return bool(self.version) and self.chunks > 0

    def to_stored(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model": self.model,
            "dimensions": self.dimensions,
            "chunks": self.chunks,
            "documents": [
                {"source": d.source, "title": d.title, "chunks": d.chunks, "sha256": d.sha256} for d in self.documents
            ],
            "previous": self.previous,
            "switchedAt": self.switched_at,
        }

    def title_of(self, source: str) -> str:
        return next((d.title for d in self.documents if d.source == source), source)


def knowledge_set_from_stored(raw: Any) -> KnowledgeSet | None:
    """The stored set, or None when there is none or it is not of this shape (edited by hand)."""
    if not isinstance(raw, Mapping):
        return None
    try:
        documents = tuple(
            StoredDocument(str(d["source"]), str(d.get("title") or d["source"]), int(d.get("chunks", 0)),
                           str(d.get("sha256", "")))
            for d in raw.get("documents") or ()
        )
        switched = raw.get("switchedAt")
        return KnowledgeSet(
            version=str(raw.get("version") or ""),
            model=str(raw.get("model") or ""),
            dimensions=int(raw.get("dimensions") or 0),
            chunks=int(raw.get("chunks") or 0),
            documents=documents,
            previous=str(raw.get("previous") or ""),
            switched_at=switched if isinstance(switched, datetime) else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _source(entry: Any, where: str, fail: Fail) -> KnowledgeSource:
    title = ""
    if isinstance(entry, Mapping):
        extra = sorted(str(k) for k in entry if k not in ("file", "title"))
        if extra:
            raise fail(f"{where}.{extra[0]}", "unknown key (a document has 'file' and an optional 'title')")
        title = entry.get("title", "")
        if not isinstance(title, str) or ("title" in entry and not title.strip()):
            raise fail(f"{where}.title", "must be non-empty text")
        title = " ".join(title.split())
        if len(title) > MAX_TITLE_CHARS:
            raise fail(f"{where}.title", f"is {len(title)} characters long, at most {MAX_TITLE_CHARS}")
        entry = entry.get("file")
        where = f"{where}.file"
    if not isinstance(entry, str) or not entry.strip():
        raise fail(where, "must be the path of a document, relative to the profiles file")
    path = entry.strip()
    if len(path) > MAX_PATH_CHARS:
        raise fail(where, f"is {len(path)} characters long, at most {MAX_PATH_CHARS}")
    if "\\" in path or path.startswith("/") or ":" in path.split("/")[0]:
        raise fail(where, f"{path!r} must be a relative path with '/' separators, such as knowledge/prices.md")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../") or normal == ".":
        raise fail(where, f"{path!r} leaves the profiles file's folder; keep documents beside it or below it")
    extension = posixpath.splitext(normal)[1].lower()
    if extension not in DOCUMENT_TYPES:
        raise fail(where, f"{path!r}: unsupported type {extension or '(none)'!r}; "
                          f"supported: {', '.join(sorted(DOCUMENT_TYPES))}")
    return KnowledgeSource(normal, title)


def knowledge_values(raw: Mapping[str, Any], fail: Fail) -> dict[str, Any]:
    """The knowledge keys of one profile as BusinessProfile fields; ``fail(key, problem)`` makes the error."""
    values: dict[str, Any] = {}
    if "knowledge" in raw:
        entries = raw["knowledge"]
        if not isinstance(entries, list):
            raise fail("knowledge", f"must be a list of documents, got {type(entries).__name__}")
        if len(entries) > MAX_DOCUMENTS:
            raise fail("knowledge", f"lists {len(entries)} documents, at most {MAX_DOCUMENTS}")
        sources = tuple(_source(entry, f"knowledge[{n}]", fail) for n, entry in enumerate(entries, start=1))
        seen: set[str] = set()
        for n, source in enumerate(sources, start=1):
            if source.path in seen:
                raise fail(f"knowledge[{n}]", f"{source.path!r} is listed twice")
            seen.add(source.path)
        values["knowledge"] = sources
    if "knowledge_only" in raw:
        if not isinstance(raw["knowledge_only"], bool):
            raise fail("knowledge_only", f"must be true or false, got {type(raw['knowledge_only']).__name__}")
        if raw["knowledge_only"] and not values.get("knowledge"):
            raise fail("knowledge_only", "is true but the profile lists no knowledge documents")
        values["knowledge_only"] = raw["knowledge_only"]
    if "unknown_reply" in raw:
        text = raw["unknown_reply"]
        if not isinstance(text, str) or not text.strip():
            raise fail("unknown_reply", "must be non-empty text")
        text = text.strip()
        if len(text) > MAX_UNKNOWN_REPLY_CHARS:
            raise fail("unknown_reply", f"is {len(text)} characters long, at most {MAX_UNKNOWN_REPLY_CHARS}")
        values["unknown_reply"] = text
    return values


def unknown_answer(unknown_reply: str, handoff_keyword: str) -> str:
    """What the bot says when its documents do not cover a question: the reply, and the way to a person.

    The handoff is offered only when the profile has one and the reply does
    not already name its keyword.
    """
    text = unknown_reply.strip() or DEFAULT_UNKNOWN_REPLY
    keyword = handoff_keyword.strip()
    if keyword and keyword.lower() not in text.lower():
        text = f"{text} Send {keyword.upper()} to talk to a person."
    return text


def note_grounding(entry: MessageEntry, version: str, chunks: Sequence[str], unknown: bool) -> None:
    """What the answer of ``entry`` was grounded in: chunk ids (not their text), for show and the trip view.

    Called inside the answer's own write, so the entry says what the model
    was given exactly when it says what was answered.
    """
    entry.knowledge_version = version
    entry.knowledge_chunks = list(chunks)
    entry.knowledge_unknown = unknown
