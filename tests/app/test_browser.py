"""The index page, served by a real gunicorn and rendered by headless Chromium."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from flask_example.app.facts import SERVICE
from tests.app.conftest import EXPECTED_FACTS, FACTS_ENV, LiveServer

pytestmark = pytest.mark.browser

# The page background in the stylesheet (light scheme): seen only if the CSP let it apply.
BACKGROUND = (0xF6, 0xF7, 0xF9)


def chromium() -> str:
    """Chromium's path; a skip outside CI when it is missing, a failure in CI."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI: `make tools` installs it (hack/system-deps.sh)")
        pytest.skip("chromium is not installed: run `make tools` or `apt-get install chromium`")
    return path


class Facts(HTMLParser):
    """Collects the text of every element whose id starts with fact- or request-."""

    def __init__(self) -> None:
        super().__init__()
        self.facts: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Start collecting inside a fact."""
        ident = dict(attrs).get("id") or ""
        if ident.startswith(("fact-", "request-")):
            self._current = ident
            self.facts[ident] = ""

    def handle_endtag(self, tag: str) -> None:
        """Stop collecting."""
        self._current = None

    def handle_data(self, data: str) -> None:
        """Keep the text of the current fact."""
        if self._current:
            self.facts[self._current] += data


def first_pixel(png: bytes) -> tuple[int, int, int]:
    """The top-left pixel of an 8-bit RGB(A) PNG (no filter changes the very first pixel)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, offset = {}, 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        chunks[kind] = chunks.get(kind, b"") + png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    bit_depth, color_type = chunks[b"IHDR"][8], chunks[b"IHDR"][9]
    assert (bit_depth, color_type in (2, 6)) == (8, True)
    pixels = zlib.decompressobj().decompress(chunks[b"IDAT"], 8)
    return pixels[1], pixels[2], pixels[3]


def test_index_page_renders_its_facts(live_server: LiveServer, tmp_path: Path) -> None:
    server = live_server.url
    screenshot = tmp_path / "index.png"
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,900",
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={screenshot}",
        "--dump-dom",
        f"{server}/",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]

    parser = Facts()
    parser.feed(result.stdout)
    expected = {f"fact-{name}": value for name, value in EXPECTED_FACTS.items()}
    expected |= {
        "request-method": "GET",
        "request-scheme": "http",
        "request-protocol": "HTTP/1.1",
        "request-host": server.removeprefix("http://"),
        "request-client": "127.0.0.1",
    }
    assert parser.facts == expected
    assert f"<title>{SERVICE} {FACTS_ENV['APP_VERSION']}</title>" in result.stdout

    # Chromium logs every blocked inline style or resource as a console message.
    assert "Content Security Policy" not in result.stderr
    assert first_pixel(screenshot.read_bytes()) == BACKGROUND
