"""``report.html``: the report's sections (:mod:`pleval.report.sections`) through the Jinja
template ``templates/report.html.j2`` (style sheet ``templates/report.css``). One file, figures
embedded as base64 PNG, no scripts and no external resources: it opens offline and can be
e-mailed. Printed from a browser, each numbered section starts on a new page.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Mapping

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .blocks import numbered_titles, verdict_class
from .sections import build, source_name, subtitle

if TYPE_CHECKING:  # pragma: no cover
    from ..estimate import Evaluation

_ENV = Environment(loader=PackageLoader("pleval.report", "templates"), autoescape=select_autoescape(["j2", "html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(ev: "Evaluation", images: Mapping[str, bytes]) -> str:
    """The HTML report of ``ev``; ``images`` maps figure names to PNG bytes."""
    sections = build(ev, images.keys())
    b64 = {k: base64.b64encode(v).decode("ascii") for k, v in images.items()}
    return _ENV.get_template("report.html.j2").render(
        sections=sections, titles=numbered_titles(sections), subtitle=subtitle(ev), image=b64.__getitem__,
        verdict_class=verdict_class, source_name=source_name(ev), unknown_block=_unknown_block,
    )


def _unknown_block(kind: str):
    raise TypeError(f"report.html has no layout for a {kind!r} block")

