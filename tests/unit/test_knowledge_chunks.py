"""Chunking along a document's own structure: headings make sections, paragraphs are packed, nothing is lost."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.knowledge_chunks import (
    Block,
    Chunk,
    chunk_blocks,
    clean_text,
    parse_markdown,
    parse_pages,
    parse_text,
    title_from_path,
)
from shared.domain.knowledge_html import parse_html

MARKDOWN = """---
title: Our prices
author: somebody
---
# Prices

All prices include VAT.

## Bread

| Bread | Price |
|---|---|
| Sourdough | 4.50 € |

Rye sourdough is 4.80 €.

Pastries
--------

Croissant 1.40 €.

```
# not a heading
inside the fence
```

### Cakes ###

Carrot cake 24 €.
"""


def test_markdown_sections_follow_its_headings() -> None:
    title, blocks = parse_markdown(MARKDOWN)
    assert title == "Our prices"
    chunks = chunk_blocks("prices.md", title, blocks, 1200)
    assert [(c.id, c.section) for c in chunks] == [
        ("prices.md#1", "Prices"),
        ("prices.md#2", "Prices › Bread"),
        ("prices.md#3", "Prices › Pastries"),
        ("prices.md#4", "Prices › Pastries › Cakes"),
    ]
    assert chunks[1].text.startswith("| Bread | Price |") and "Rye sourdough is 4.80 €." in chunks[1].text
    assert "# not a heading\ninside the fence" in chunks[2].text
    assert all(c.title == "Our prices" for c in chunks)
    assert chunks[0].embedding_input == "Our prices › Prices\n\nAll prices include VAT."


def test_the_first_level_one_heading_is_the_title_and_not_repeated_as_a_section() -> None:
    title, blocks = parse_markdown("# Opening hours\n\nMonday to Friday.\n\n## Holidays\n\nClosed on 25 December.\n")
    chunks = chunk_blocks("hours.md", title, blocks, 1200)
    assert title == "Opening hours"
    assert [c.section for c in chunks] == ["", "Holidays"]
    assert chunks[0].embedding_input == "Opening hours\n\nMonday to Friday."


def test_paragraphs_are_packed_up_to_the_size_and_a_long_one_is_cut_at_sentences() -> None:
    sentences = " ".join(f"Sentence number {n} says something useful." for n in range(40))
    text = "Short one.\n\nShort two.\n\n" + sentences
    chunks = chunk_blocks("faq.txt", "FAQ", parse_text(text), 300)
    assert chunks[0].text == "Short one.\n\nShort two."
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks), "a long paragraph is cut at sentence ends"
    assert " ".join(c.text for c in chunks[1:]) == sentences


def test_a_word_longer_than_a_chunk_is_cut_hard() -> None:
    chunks = chunk_blocks("x.txt", "X", [Block("a" * 950)], 400)
    assert [len(c.text) for c in chunks] == [400, 400, 150]


def test_chunk_hashes_name_their_content_and_place() -> None:
    a = Chunk("p.md#1", "p.md", "Prices", "Bread", "Sourdough 4.50 €")
    assert a.sha256 == Chunk("p.md#9", "p.md", "Prices", "Bread", "Sourdough 4.50 €").sha256
    assert a.sha256 != Chunk("p.md#1", "p.md", "Prices", "Cakes", "Sourdough 4.50 €").sha256
    assert a.sha256 != Chunk("p.md#1", "p.md", "Prices", "Bread", "Sourdough 4.60 €").sha256


def test_plain_text_has_underlined_headings_and_paragraphs() -> None:
    blocks = parse_text("Opening hours\r\n=============\r\n\r\nMonday: 9-19.\r\nFriday: 9-15.\r\n\r\n"
                        "Walk-ins\n--------\n\nNone.")
    assert blocks == [Block("Opening hours", 1), Block("Monday: 9-19.\nFriday: 9-15."), Block("Walk-ins", 2),
                      Block("None.")]


def test_control_and_zero_width_characters_are_removed() -> None:
    assert clean_text("a\x00b\u200bc\ufeff\td\r\ne") == "abc\td\ne"


def test_a_title_from_a_file_name() -> None:
    assert title_from_path("knowledge/opening-hours.md") == "Opening hours"
    assert title_from_path("faq_2026.txt") == "Faq 2026"


def test_html_headings_paragraphs_lists_tables_and_breaks() -> None:
    page = """<!doctype html><html><head><title>Orders &amp; returns</title>
    <style>p { color: red }</style><script>var secret = "ignore me";</script></head>
    <body><nav><a href="/">Home</a></nav>
    <h1>Orders</h1><p>We take orders
    by phone.<br>Call +34 910 000 000.</p>
    <h2>Prices</h2><table><tr><th>Item</th><th>Price</th></tr><tr><td>Cake</td><td>24&nbsp;€</td></tr></table>
    <ul><li>Gluten</li><li>Milk</li></ul><pre>  kept
      as is</pre><noscript>enable js</noscript></body></html>"""
    title, blocks = parse_html(page)
    assert title == "Orders & returns"
    assert Block("We take orders by phone.\nCall +34 910 000 000.") in blocks
    assert Block("Item | Price\nCake | 24 €", whole=True) in blocks
    assert Block("  kept\n      as is", whole=True) in blocks
    assert Block("Orders", 1) in blocks and Block("Prices", 2) in blocks
    text = " ".join(b.text for b in blocks)
    assert "ignore me" not in text and "color: red" not in text and "enable js" not in text
    chunks = chunk_blocks("policy.html", title, blocks, 1200)
    assert [(c.section, c.text.split("\n")[0]) for c in chunks] == [
        ("", "Home"), ("Orders", "We take orders by phone."), ("Orders › Prices", "Item | Price"),
    ]


def test_pdf_pages_are_sections() -> None:
    blocks = parse_pages(["Menu\n\nSoup 5 €", "", "Dessert 4 €"])
    assert blocks == [Block("Page 1", 1), Block("Menu"), Block("Soup 5 €"), Block("Page 3", 1),
                      Block("Dessert 4 €")]
    chunks = chunk_blocks("menu.pdf", "Menu", blocks, 1200)
    assert [(c.section, c.text) for c in chunks] == [("Page 1", "Menu\n\nSoup 5 €"), ("Page 3", "Dessert 4 €")]


words = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=30)
paragraph = st.lists(words, min_size=1, max_size=60).map(" ".join)
document = st.lists(st.one_of(paragraph, words.map(lambda w: f"## {w}")), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(document, st.integers(min_value=200, max_value=1500))
def test_no_chunk_is_too_long_and_every_word_survives_in_order(lines: list[str], size: int) -> None:
    text = "\n\n".join(lines)
    title, blocks = parse_markdown(text)
    chunks = chunk_blocks("d.md", title, blocks, size)
    assert all(0 < len(c.text) <= size for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)
    body = [w for line in lines if not line.startswith("## ") for w in line.split()]
    got = [w for c in chunks for w in re.split(r"\s+", c.text) if w]
    # Hard cuts may split a word in two; joined back, the text is the same (in NFC, as every document is read).
    assert "".join(got) == unicodedata.normalize("NFC", "".join(body))
