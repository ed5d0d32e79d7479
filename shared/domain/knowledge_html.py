"""HTML documents into the blocks of shared/domain/knowledge_chunks.py, with the standard library's parser.

Headings (``h1``-``h6``) open sections; paragraphs, list items, table rows
(cells joined by " | ", a table one block), preformatted text, quotes and definition lists are
blocks; ``<br>`` is a line break. Script, style, templates, SVG and forms
carry no text for a reader and are left out, as is everything in ``<head>``
but the ``<title>``. Entities are decoded by the parser. Pure: no I/O.
"""

from __future__ import annotations

from html.parser import HTMLParser

from shared.domain.knowledge_chunks import Block, clean_text

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = frozenset({
    "p", "li", "dt", "dd", "pre", "blockquote", "div", "section", "article", "main", "aside", "header", "footer",
    "nav", "ul", "ol", "dl", "tbody", "thead", "tfoot", "figure", "figcaption", "address", "details",
    "summary", "body", "form", "fieldset", "hr",
})
_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object", "select", "button",
                      "textarea", "canvas"})
# Stands for <br> until whitespace is collapsed (a private-use character: never in a document's text).
_BREAK = "\ue000"
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "col", "area", "base", "source", "track"})


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title = ""
        self._text: list[str] = []
        self._skip = 0
        self._in_title = False
        self._in_head = False
        self._heading = 0
        self._pre = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._table: list[str] | None = None

    def _flush(self) -> None:
        raw = "".join(self._text)
        self._text.clear()
        if self._pre:
            text = raw.replace(_BREAK, "\n").strip("\n")
        else:
            # Source line breaks are spaces in HTML; only <br> breaks a line.
            text = "\n".join(" ".join(line.split()) for line in raw.split(_BREAK)).strip()
        if not text.strip():
            return
        if self._heading:
            self.blocks.append(Block(" ".join(text.split()), level=self._heading))
        else:
            self.blocks.append(Block(text, whole=bool(self._pre)))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            if tag not in _VOID:
                self._skip += 1
            return
        if self._skip:
            return
        if tag == "head":
            self._in_head = True
        elif tag == "title":
            self._in_title = True
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag == "table":
            self._flush()
            self._table = []
        elif tag == "tr":
            self._flush()
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "br":
            self._write(_BREAK)
        elif tag in _BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag == "head":
            self._in_head = False
        elif tag == "title":
            self._in_title = False
        elif tag in _HEADINGS:
            self._flush()
            self._heading = 0
        elif tag == "pre":
            self._flush()
            self._pre = max(0, self._pre - 1)
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            cells = [c for c in self._row if c]
            if cells and self._table is not None:
                self._table.append(" | ".join(cells))
            elif cells:
                self.blocks.append(Block(" | ".join(cells), whole=True))
            self._row = None
        elif tag == "table" and self._table is not None:
            self._flush()
            if self._table:
                self.blocks.append(Block("\n".join(self._table), whole=True))
            self._table = None
        elif tag in _BLOCKS:
            self._flush()

    def _write(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        else:
            self._text.append(data)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data
        elif not self._in_head:
            self._write(data)

    def close(self) -> None:
        super().close()
        self._flush()


def parse_html(text: str) -> tuple[str, list[Block]]:
    """The title (``<title>``, else the first ``<h1>``) and the blocks of an HTML document."""
    reader = _Reader()
    reader.feed(clean_text(text))
    reader.close()
    title = " ".join(reader.title.split()) or next((b.text for b in reader.blocks if b.level == 1), "")
    return title, reader.blocks
