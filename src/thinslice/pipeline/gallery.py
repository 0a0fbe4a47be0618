"""``index.html``: one page listing every case of a batch with its status and its preview.

A static page (no scripts, no network) next to the JSON report; pictures and outputs are
linked by paths relative to it, so the folder can be moved or served as it is.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from thinslice.errors import OutputError
from thinslice.io.atomic import write_text

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="thinslice">
<title>thinslice batch: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.4em 0.8em; text-align: left; vertical-align: top; }}
tr.failed td.status {{ color: #b00; font-weight: bold; }}
tr.done td.status {{ color: #070; }}
img {{ max-width: 640px; }}
</style>
</head>
<body>
<h1>thinslice batch</h1>
<p>{summary}</p>
<table>
<tr><th>case</th><th>status</th><th>slices</th><th>output</th><th>preview</th></tr>
{rows}
</table>
</body>
</html>
"""


def _link(target: str | None, base: Path) -> str | None:
    """``target`` relative to ``base``, URL-quoted (None when there is none)."""
    if not target:
        return None
    return quote(Path(os.path.relpath(Path(target).absolute(), base.absolute())).as_posix())


#: What marks a page as a gallery thinslice wrote (and may replace).
MARK = '<meta name="generator" content="thinslice">'


def check_gallery(path: Path, overwrite: bool) -> None:
    """Refuse to replace a file at ``path`` that is not a gallery thinslice wrote (someone's
    own index.html beside the report), unless ``overwrite``.

    Raises:
        OutputError: naming the file and the way out.
    """
    if overwrite or not (path.exists() or path.is_symlink()):
        return
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:2000]
        ours = MARK in head or "<title>thinslice batch:" in head  # galleries from before the mark too
    except OSError:
        ours = False
    if not ours:
        raise OutputError(
            f"{path} exists and is not a thinslice gallery, which --preview writes beside the report; pass "
            "--overwrite to replace it or give --report another folder"
        )


def write_gallery(path: str | os.PathLike[str], report: dict[str, Any]) -> Path:
    """Write the gallery of a batch report (:meth:`BatchReport.to_dict`) to ``path``, atomically."""
    out = Path(path)
    rows = []
    for case in report["cases"]:
        name, status = html.escape(case["name"]), html.escape(case["status"])
        picture = _link(case.get("preview"), out.parent)
        output = _link(case["output"], out.parent) if status != "failed" else None  # a failed case made none
        cell = f'<a href="{picture}"><img src="{picture}" alt="{name}" loading="lazy"></a>' if picture else ""
        if status == "failed":
            cell = html.escape(case.get("reason") or "")
        slices = ""
        if case.get("input_slices") and case.get("output_slices"):
            slices = f"{case['input_slices']} &rarr; {case['output_slices']}"
        link = f'<a href="{output}">{html.escape(Path(case["output"]).name)}</a>' if output else ""
        rows.append(
            f'<tr class="{status}"><td>{name}</td><td class="status">{status}</td>'
            f"<td>{slices}</td><td>{link}</td><td>{cell}</td></tr>"
        )
    counts = report.get("counts", {})
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "skipped", "failed"))
    settings = report.get("settings", {})
    title = html.escape(str(settings.get("input", "")))
    summary = html.escape(f"{summary}; input {settings.get('input', '')}, method {settings.get('method', '')}")
    return write_text(out, _PAGE.format(title=title, summary=summary, rows="\n".join(rows)))
