"""An HTML page read back for the report tests: table cells by table id (or position), group
rows, image sources, every URL-bearing attribute, SVG bars and the tags seen."""

from __future__ import annotations

from collections import defaultdict
from html.parser import HTMLParser


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = defaultdict(list)
        self.group_rows: dict[str, list[str]] = {}
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.svg_rects = 0
        self._count = 0
        self._table: str | None = None
        self._row: list[str] | None = None
        self._group = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for key in ("src", "href", "action", "poster", "data"):
            if key in a:
                self.urls.append(a[key])
        if tag == "table":
            self._count += 1
            self._table = a.get("id") or f"table-{self._count}"
        elif tag == "tr":
            self._row, self._group = [], a.get("data-group")
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "rect":
            self.svg_rects += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._table:
                self.tables[self._table].append(self._row)
            if self._group:
                self.group_rows[self._group] = self._row
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
