"""Reading knowledge documents: every bad file refused with the business and the file named, before any write."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config import Settings
from shared.domain.knowledge import KnowledgeSource
from shared.domain.profiles import BusinessProfile, ProfileError
from shared.ops.knowledge_files import knowledge_summary, read_document, read_knowledge

SHOP = "whatsapp:+14155238886"
SETTINGS = Settings(knowledge_max_document_bytes=4096, knowledge_chunk_chars=300, knowledge_max_chunks=10)


def pdf(pages: list[str], title: str = "") -> bytes:
    """A small real PDF, one text line per page, with its cross-reference table."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * n} 0 R" for n in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>")
    font = 3 + 2 * len(pages)
    for n, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * n} 0 R "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    info = ""
    if title:
        objects.append(f"<< /Title ({title}) >>")
        info = f" /Info {len(objects)} 0 R"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write(tmp_path: Path, name: str, data: bytes) -> KnowledgeSource:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return KnowledgeSource(name)


def test_a_markdown_document_is_read_titled_and_chunked(tmp_path: Path) -> None:
    text = "# Prices\n\nSourdough 4.50 €.\n\n## Cakes\n\nCarrot 24 €.\n"
    source = write(tmp_path, "docs/prices.md", text.encode())
    document = read_document(tmp_path, source, SETTINGS)
    assert document.title == "Prices" and document.source == "docs/prices.md" and len(document.sha256) == 64
    assert [(c.section, c.text) for c in document.chunks] == [("", "Sourdough 4.50 €."), ("Cakes", "Carrot 24 €.")]


def test_the_profile_title_wins_and_a_bom_is_no_text(tmp_path: Path) -> None:
    write(tmp_path, "faq.txt", "\ufeffWe open at 7.".encode())
    document = read_document(tmp_path, KnowledgeSource("faq.txt", "Questions"), SETTINGS)
    assert document.title == "Questions" and document.chunks[0].text == "We open at 7."


def test_a_pdf_is_read_page_by_page(tmp_path: Path) -> None:
    source = write(tmp_path, "menu.pdf", pdf(["Soup of the day 5 euros", "Dessert 4 euros"], title="Menu"))
    document = read_document(tmp_path, source, SETTINGS)
    assert document.title == "Menu"
    assert [(c.section, c.text) for c in document.chunks] == [("Page 1", "Soup of the day 5 euros"),
                                                              ("Page 2", "Dessert 4 euros")]


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("empty.md", b"  \n\n", "is empty"),
        ("nul.txt", b"menu\x00\x01\x02", "is binary (it has NUL bytes)"),
        ("latin1.txt", "Panadería".encode("latin-1"), "is not UTF-8 (byte 0xed at offset 7); save it as UTF-8"),
        ("big.md", b"x" * 5000, "is 5 KiB, larger than 4 KiB (KNOWLEDGE_MAX_DOCUMENT_BYTES)"),
        ("headings.md", b"# Only\n## Headings\n", "has no text"),
        ("fake.pdf", b"<html>not a pdf</html>", "is not a PDF"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj\n<<", "is not a readable PDF"),
        ("scan.pdf", pdf([""]), "is a PDF without a text layer"),
    ],
)
def test_a_bad_document_says_what_is_wrong(tmp_path: Path, name: str, data: bytes, problem: str) -> None:
    source = write(tmp_path, name, data)
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_document(tmp_path, source, SETTINGS)


def test_missing_and_escaping_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_document(tmp_path, KnowledgeSource("nowhere.md"), SETTINGS)
    (tmp_path / "folder.md").mkdir()
    with pytest.raises(ValueError, match="is not a file"):
        read_document(tmp_path, KnowledgeSource("folder.md"), SETTINGS)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.md"
    outside.write_text("secret")
    (tmp_path / "link.md").symlink_to(outside)
    with pytest.raises(ValueError, match="outside"):
        read_document(tmp_path, KnowledgeSource("link.md"), SETTINGS)


def test_errors_name_the_business_and_the_file(tmp_path: Path) -> None:
    write(tmp_path, "ok.md", b"Fine.")
    profiles = {SHOP: BusinessProfile(address=SHOP, knowledge=(KnowledgeSource("ok.md"), KnowledgeSource("gone.md")))}
    named = re.escape(f"business '{SHOP}': knowledge document 'gone.md' does not exist")
    with pytest.raises(ProfileError, match=named):
        read_knowledge(profiles, tmp_path, SETTINGS)


def test_too_many_chunks_for_one_business_is_refused_naming_the_largest(tmp_path: Path) -> None:
    write(tmp_path, "long.txt", "\n\n".join(f"Paragraph {n}. " + "word " * 40 for n in range(12)).encode())
    write(tmp_path, "short.txt", b"Short.")
    sources = (KnowledgeSource("short.txt"), KnowledgeSource("long.txt"))
    profiles = {SHOP: BusinessProfile(address=SHOP, knowledge=sources)}
    named = r"make 13 chunks, at most 10 \(KNOWLEDGE_MAX_CHUNKS\); the largest is 'long.txt'"
    with pytest.raises(ProfileError, match=named):
        read_knowledge(profiles, tmp_path, SETTINGS)


def test_businesses_without_knowledge_read_nothing(tmp_path: Path) -> None:
    documents = read_knowledge({SHOP: BusinessProfile(address=SHOP)}, tmp_path, SETTINGS)
    assert documents == {SHOP: ()} and knowledge_summary(documents) == ""
    write(tmp_path, "a.md", b"A.")
    one = read_knowledge({SHOP: BusinessProfile(address=SHOP, knowledge=(KnowledgeSource("a.md"),))}, tmp_path,
                         SETTINGS)
    assert knowledge_summary(one) == "; 1 knowledge document(s), 1 chunk(s)"
