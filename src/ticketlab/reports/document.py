"""One report as a list of blocks (headings with anchors, paragraphs, lists, tables, images, code),
rendered twice: as Markdown (report.md) and as a self-contained HTML page (report.html: styles and
plots inline, a table of contents linking every section's anchor).

Text may hold `code` spans, **bold** and [links](url); Markdown keeps them, HTML renders them. Table cells that carry
numbers ("82.86 ± 0.05") never wrap in HTML.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

CODE_SPAN = re.compile(r"`([^`]+)`")
NUMERIC = re.compile(r"^(?:[-+]?[\d.,]+|—|\[.*\])(?:\s|$)")  # cells aligned right: numbers, ranges, —


def numeric_columns(table) -> list[bool]:
    """Columns whose every cell is a number (or —) are aligned right; text stays left."""
    return [bool(table.rows) and all(NUMERIC.match(row[i]) for row in table.rows if i < len(row))
            for i in range(len(table.headers))]


@dataclass
class Heading:
    level: int
    text: str
    anchor: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Image:
    path: Path
    alt: str


@dataclass
class Code:
    lines: list[str]


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def section(self, text: str, anchor: str, level: int = 2) -> None:
        self.blocks.append(Heading(level, text, anchor))

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)

    def anchors(self) -> list[str]:
        return [b.anchor for b in self.blocks if isinstance(b, Heading)]


def slug(text: str) -> str:
    """An anchor id from a heading: lower case, letters and digits, words joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


# ---- Markdown ----------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            lines += [f"{'#' * block.level} {block.text}", ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [block.caption, ""]
            lines += ["| " + " | ".join(map(_cell, block.headers)) + " |",
                      "|" + "|".join("--:" if right else "---" for right in numeric_columns(block)) + "|"]
            lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in block.rows] + [""]
        elif isinstance(block, Image):
            lines += [f"![{block.alt}]({block.path.name})", ""]
        elif isinstance(block, Code):
            lines += ["```", *block.lines, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---- HTML --------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2125;background:#fff;
  max-width:1100px;margin:0 auto;padding:24px 32px 64px;line-height:1.5}
h1{font-size:1.7em;border-bottom:2px solid #2c6fbb;padding-bottom:6px}
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #d8dee4;padding-bottom:4px}
h3{font-size:1.1em;margin-top:1.5em}
a{color:#2c6fbb}
nav{background:#f4f7fa;border:1px solid #d8dee4;border-radius:6px;padding:8px 16px;margin:16px 0}
nav ul{margin:4px 0;padding-left:20px}
code{background:#f0f2f4;border-radius:3px;padding:1px 4px;font-size:0.92em}
pre{background:#f6f8fa;border:1px solid #d8dee4;border-radius:6px;padding:10px;overflow-x:auto}
.table-wrap{overflow-x:auto;margin:12px 0}
table{border-collapse:collapse;font-size:0.92em}
caption{text-align:left;color:#57606a;padding:4px 0}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;white-space:nowrap}
th{background:#eef2f6}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#f8fafc}
figure{margin:16px 0}
figure img{max-width:100%;border:1px solid #e1e4e8}
figcaption{color:#57606a;font-size:0.9em}
"""


BOLD = re.compile(r"\*\*(.+?)\*\*")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _prose_html(text: str) -> str:
    """Escaped prose with Markdown's **bold** and [links](url) (notes written for report.md use them)."""
    text = BOLD.sub(r"<strong>\1</strong>", html.escape(text, quote=False))
    return LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', text)


def inline_html(text: str) -> str:
    """Escaped text with `code` spans as <code>, **bold** and [links](url)."""
    parts = CODE_SPAN.split(text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else _prose_html(p) for i, p in enumerate(parts))


def to_html(doc: Document) -> str:
    """A page that needs nothing else: styles inline, images as data URIs, a contents list of every section."""
    body: list[str] = []
    open_sections = 0
    for block in doc.blocks:
        if isinstance(block, Heading):
            if block.level == 2:
                body.append("</section>" * open_sections)
                body.append(f'<section id="{html.escape(block.anchor)}">')
                open_sections = 1
                body.append(f"<h2>{inline_html(block.text)}</h2>")
            else:
                body.append(f'<h{block.level} id="{html.escape(block.anchor)}">{inline_html(block.text)}</h{block.level}>')
        elif isinstance(block, Paragraph):
            body.append(f"<p>{inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            caption = f"<caption>{inline_html(block.caption)}</caption>" if block.caption else ""
            align = [' class="num"' if right else "" for right in numeric_columns(block)]
            head = "<tr>" + "".join(f"<th{a}>{inline_html(h)}</th>" for h, a in zip(block.headers, align)) + "</tr>"
            rows = "".join("<tr>" + "".join(f"<td{a}>{inline_html(c)}</td>" for c, a in zip(row, align)) + "</tr>"
                           for row in block.rows)
            body.append(f'<div class="table-wrap"><table>{caption}<thead>{head}</thead><tbody>{rows}</tbody></table></div>')
        elif isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{inline_html(block.alt)}</figcaption></figure>")
        elif isinstance(block, Code):
            body.append("<pre>" + html.escape("\n".join(block.lines)) + "</pre>")
    body.append("</section>" * open_sections)
    contents = "".join(f'<li><a href="#{html.escape(b.anchor)}">{inline_html(b.text)}</a></li>'
                       for b in doc.blocks if isinstance(b, Heading) and b.level == 2)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(doc.title)}</title><style>{STYLE}</style></head><body>\n"
            f"<header><h1>{inline_html(doc.title)}</h1></header>\n"
            f'<nav id="contents"><strong>Contents</strong><ul>{contents}</ul></nav>\n<main>\n'
            + "\n".join(body) + "\n</main></body></html>\n")
