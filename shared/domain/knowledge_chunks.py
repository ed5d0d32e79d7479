"""Documents into chunks along their own structure: sections under headings, then paragraphs.

A chunk never spans two sections, so what the model is given under a
document's heading is what the document says under it; inside a section,
whole paragraphs are packed up to ``chunk_chars``, and only a paragraph
longer than that is cut, at sentence ends first, then lines, then words.
Code blocks and tables stay whole where they fit. Each chunk keeps the
document's title and its heading path ("Prices › Bread"), which the bot cites
and which is embedded with the text, so a question naming a section finds it.

Markdown (ATX and setext headings, fenced code, YAML front matter) and plain
text are parsed here; HTML in shared/domain/knowledge_html.py; a PDF's pages
arrive as text (shared/ops/knowledge_files.py). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Iterator

SECTION_SEPARATOR = " › "
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;:])\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")


@dataclass(frozen=True)
class Block:
    """A heading (``level`` 1-6) or a block of text (``level`` 0); ``whole``: code or a table."""

    text: str
    level: int = 0
    whole: bool = False


@dataclass(frozen=True)
class Chunk:
    """One piece of one document, as stored and as given to the model."""

    id: str
    source: str
    title: str
    section: str
    text: str

    @property
    def sha256(self) -> str:
        """Identifies the chunk's content, citation included: equal hashes embed alike."""
        return hashlib.sha256("\x1f".join((self.source, self.title, self.section, self.text)).encode()).hexdigest()

    @property
    def embedding_input(self) -> str:
        """What is embedded: where the text sits in its document, then the text."""
        where = SECTION_SEPARATOR.join(part for part in (self.title, self.section) if part)
        return f"{where}\n\n{self.text}" if where else self.text


def clean_text(text: str) -> str:
    """NFC, Unix line ends, no control or zero-width characters (tabs and line breaks kept)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROL.sub("", text)


def title_from_path(path: str) -> str:
    """``knowledge/opening-hours.md`` -> ``Opening hours``: the fallback when a document names no title."""
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    words = re.sub(r"[-_]+", " ", stem).strip()
    return (words[:1].upper() + words[1:]) if words else path


def _front_matter_title(lines: list[str]) -> tuple[str, int]:
    """The ``title:`` of YAML front matter, and how many lines the front matter takes."""
    if not lines or lines[0].strip() != "---":
        return "", 0
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            title = ""
            for line in lines[1:end]:
                match = re.match(r"^title:\s*(.+?)\s*$", line)
                if match:
                    title = match.group(1).strip("'\"")
            return title, end + 1
    return "", 0


def parse_markdown(text: str) -> tuple[str, list[Block]]:
    """The title (front matter, else the first level-1 heading) and the blocks of a Markdown document."""
    lines = clean_text(text).split("\n")
    title, start = _front_matter_title(lines)
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        body = "\n".join(paragraph).strip()
        if body:
            whole = all(line.lstrip().startswith("|") for line in paragraph if line.strip())
            blocks.append(Block(body, whole=whole))
        paragraph.clear()

    n = start
    while n < len(lines):
        line = lines[n]
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence.group(1)
            body = [line]
            n += 1
            while n < len(lines) and not lines[n].strip().startswith(marker[0] * len(marker)):
                body.append(lines[n])
                n += 1
            if n < len(lines):
                body.append(lines[n])
            blocks.append(Block("\n".join(body).strip(), whole=True))
            n += 1
            continue
        atx = _ATX.match(line)
        if atx:
            flush()
            heading = (atx.group(2) or "").strip()
            if heading:
                blocks.append(Block(heading, level=len(atx.group(1))))
        elif paragraph and _SETEXT.match(line) and not paragraph[-1].lstrip().startswith(("|", "-", "*", ">")):
            heading = paragraph.pop().strip()
            flush()
            blocks.append(Block(heading, level=1 if line.strip().startswith("=") else 2))
        elif not line.strip() or _BREAK.match(line):
            flush()
        else:
            paragraph.append(line.rstrip())
        n += 1
    flush()
    if not title:
        title = next((b.text for b in blocks if b.level == 1), "")
    return title, blocks


def parse_text(text: str) -> list[Block]:
    """Plain text: paragraphs between blank lines; a line underlined with === or --- is a heading."""
    blocks: list[Block] = []
    paragraph: list[str] = []
    for line in clean_text(text).split("\n"):
        if paragraph and _SETEXT.match(line) and len(paragraph) == 1:
            blocks.append(Block(paragraph.pop().strip(), level=1 if line.strip().startswith("=") else 2))
        elif not line.strip():
            if paragraph:
                blocks.append(Block("\n".join(paragraph).strip()))
            paragraph.clear()
        else:
            paragraph.append(line.rstrip())
    if paragraph:
        blocks.append(Block("\n".join(paragraph).strip()))
    return blocks


def parse_pages(pages: Iterable[str]) -> list[Block]:
    """A PDF's extracted pages: each page is a section ("Page 3") of paragraphs."""
    blocks: list[Block] = []
    for number, page in enumerate(pages, start=1):
        body = parse_text(page)
        if body:
            blocks.append(Block(f"Page {number}", level=1))
            blocks.extend(b if b.level == 0 else Block(b.text, level=b.level + 1) for b in body)
    return blocks


def _pieces(text: str, limit: int) -> Iterator[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at sentence ends, lines, words, or hard."""
    if len(text) <= limit:
        yield text
        return
    for splitter in (_SENTENCE_END, re.compile(r"\n+"), re.compile(r"\s+")):
        parts = [p for p in splitter.split(text) if p.strip()]
        if len(parts) > 1:
            current = ""
            for part in parts:
                joined = f"{current} {part}".strip() if current else part
                if len(joined) <= limit:
                    current = joined
                    continue
                if current:
                    yield current
                if len(part) <= limit:
                    current = part
                else:
                    yield from _pieces(part, limit)
                    current = ""
            if current:
                yield current
            return
    for start in range(0, len(text), limit):
        yield text[start:start + limit]


def chunk_blocks(source: str, title: str, blocks: Iterable[Block], chunk_chars: int) -> list[Chunk]:
    """Blocks packed into chunks of at most ``chunk_chars``, never across a heading."""
    chunks: list[Chunk] = []
    headings: list[tuple[int, str]] = []
    current: list[str] = []

    def section() -> str:
        # The document's own first heading is its title: not repeated as a section.
        names = [text for level, text in headings if not (level == 1 and text == title)]
        return SECTION_SEPARATOR.join(names)

    def emit() -> None:
        body = "\n\n".join(current).strip()
        current.clear()
        if body:
            chunks.append(Chunk(f"{source}#{len(chunks) + 1}", source, title, section(), body))

    for block in blocks:
        if block.level:
            emit()
            headings = [(level, text) for level, text in headings if level < block.level]
            headings.append((block.level, " ".join(block.text.split())))
            continue
        size = sum(len(part) + 2 for part in current)
        if current and size + len(block.text) > chunk_chars:
            emit()
        if len(block.text) <= chunk_chars:
            current.append(block.text)
            continue
        for piece in _pieces(block.text, chunk_chars):
            current.append(piece)
            emit()
    emit()
    return chunks
