"""Render a terminal screen (tmux `capture-pane -e` output: text with SGR colour escapes) to HTML,
and that HTML to a PNG with headless Chromium — the Neovim screenshots in docs/editors.md."""

from __future__ import annotations

import html
import re
import subprocess
import tempfile
from pathlib import Path

SGR = re.compile(r"\x1b\[([0-9;:]*)m")
BASE16 = [
    "#1e1e1e", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
]
DEFAULT_FG, DEFAULT_BG = "#d4d4d4", "#14161b"


def _xterm256(n: int) -> str:
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return f"#{steps[n // 36]:02x}{steps[(n // 6) % 6]:02x}{steps[n % 6]:02x}"
    level = 8 + (n - 232) * 10
    return f"#{level:02x}{level:02x}{level:02x}"


class _Style:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fg: str | None = None
        self.bg: str | None = None
        self.bold = self.italic = self.underline = self.reverse = False

    def apply(self, params: str) -> None:
        codes = [int(c) if c.isdigit() else 0 for c in params.replace(":", ";").split(";")] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 22:
                self.bold = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37:
                self.fg = BASE16[c - 30]
            elif 90 <= c <= 97:
                self.fg = BASE16[c - 90 + 8]
            elif 40 <= c <= 47:
                self.bg = BASE16[c - 40]
            elif 100 <= c <= 107:
                self.bg = BASE16[c - 100 + 8]
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour = _xterm256(codes[i + 2])
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    colour = "#{:02x}{:02x}{:02x}".format(*codes[i + 2 : i + 5])
                    i += 4
                else:
                    colour = None
                if c == 38:
                    self.fg = colour
                else:
                    self.bg = colour
            i += 1

    def css(self) -> str:
        fg, bg = self.fg or DEFAULT_FG, self.bg or DEFAULT_BG
        if self.reverse:
            fg, bg = bg, fg
        parts = [f"color:{fg}", f"background:{bg}"]
        if self.bold:
            parts.append("font-weight:bold")
        if self.italic:
            parts.append("font-style:italic")
        if self.underline:
            parts.append("text-decoration:underline")
        return ";".join(parts)


def to_html(screen: str, title: str = "") -> str:
    style = _Style()
    rows = []
    for line in screen.rstrip("\n").split("\n"):
        out, pos = [], 0
        for match in SGR.finditer(line):
            if match.start() > pos:
                out.append(f'<span style="{style.css()}">{html.escape(line[pos:match.start()])}</span>')
            style.apply(match.group(1))
            pos = match.end()
        if pos < len(line):
            out.append(f'<span style="{style.css()}">{html.escape(line[pos:])}</span>')
        rows.append("".join(out) or " ")
    caption = f'<div class="title">{html.escape(title)}</div>' if title else ""
    return (
        "<!doctype html><meta charset=utf-8><style>"
        f"body{{margin:0;background:{DEFAULT_BG};}}"
        ".title{font:13px sans-serif;color:#aaa;padding:6px 10px;background:#0b0c10}"
        f"pre{{margin:0;padding:8px 10px;font:15px/1.25 'DejaVu Sans Mono',monospace;color:{DEFAULT_FG}}}"
        f"</style>{caption}<pre>" + "\n".join(rows) + "</pre>"
    )


def screenshot(screen: str, png: Path, chromium: Path, title: str = "", size: str = "960,600") -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "screen.html"
        page.write_text(to_html(screen, title), encoding="utf-8")
        subprocess.run(
            [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp}/profile",
             "--hide-scrollbars", f"--window-size={size}", f"--screenshot={png}", page.as_uri()],
            capture_output=True, timeout=60, check=True,
        )
    return png
