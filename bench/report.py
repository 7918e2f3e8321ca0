"""Writing a benchmark's results into its own marked section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, heading: str, lines: list[str]) -> str:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in
    ``path`` (or append a new section under ``heading``); return the section."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = "\n".join([start, *lines, end])
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in doc:
        before, rest = doc.split(start, 1)
        doc = before + text + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip() + f"\n\n## {heading}\n\n" + text + "\n"
    path.write_text(doc)
    return text
