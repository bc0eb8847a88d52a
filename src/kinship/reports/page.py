"""The page every report shares: one self-contained HTML document, readable on screen and on A4.

Nothing is loaded from anywhere: styles are inline, images are data: URIs, charts are
inline SVG. Colours come from the Okabe-Ito palette (told apart by colour-blind
readers), and every figure also says what it means in text or in a table.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

#: Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
    "grey": "#777777",
}

LEAD_NOT_IDENTIFICATION = (
    "This report lists leads for a person to verify. A candidate, however strong, is never an "
    "identification: verify by other means (documents, DNA) before anyone acts."
)

_CSS = """
:root { --ink: #111; --muted: #555; --line: #ccc; --accent: BLUE; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1100px; padding: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.note, .muted { color: var(--muted); }
.notice { border: 2px solid VERMILLION; padding: 10px 14px; margin: 14px 0; font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
img.face { width: 96px; height: 96px; object-fit: cover; border: 1px solid var(--line); }
figure { margin: 12px 0 20px; break-inside: avoid; } figcaption { color: var(--muted); font-size: 13px; }
svg text { font: 11px system-ui, sans-serif; fill: #222; }
footer { margin-top: 32px; border-top: 1px solid var(--line); padding-top: 8px; color: var(--muted); font-size: 12px; }
.strong { font-weight: 700; }
@page { size: A4; margin: 14mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  .no-print { display: none; }
  section, tr, figure { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
""".replace("BLUE", PALETTE["blue"]).replace("VERMILLION", PALETTE["vermillion"])


def esc(value: object) -> str:
    """Text made safe for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def now_utc() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def render_page(title: str, body: str, footer: str = "") -> str:
    """A whole HTML document: `body` and `footer` are HTML already escaped by the caller."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # No network: a policy that forbids every fetch except inline data.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">\n"
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<main>\n{body}\n</main>\n<footer>\n{footer}\n</footer>\n</body>\n</html>\n"
    )
