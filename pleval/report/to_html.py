"""``report.html``: the report's sections (:mod:`pleval.report.sections`) through the Jinja
template ``templates/report.html.j2`` (style sheet ``templates/report.css``). One file, figures
embedded as base64 PNG, no scripts and no external resources: it opens offline and can be
e-mailed. Printed from a browser, each numbered section starts on a new page.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Mapping, Sequence

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .blocks import Section, numbered_titles, verdict_class
from .sections import build, source_name, subtitle

if TYPE_CHECKING:  # pragma: no cover
    from ..estimate import Evaluation

_ENV = Environment(loader=PackageLoader("pleval.report", "templates"), autoescape=select_autoescape(["j2", "html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(ev: "Evaluation", images: Mapping[str, bytes], *, sections: Sequence[Section] | None = None) -> str:
    """The HTML report of ``ev``; ``images`` maps figure names to PNG bytes. ``sections``: the
    report's sections if already built (``build(ev, images)``)."""
    if sections is None:
        sections = build(ev, images.keys())
    return render_sections(sections, images, heading="Did personalized learning work?",
                           doc_title="PL evaluation", subtitle=subtitle(ev), source_name=source_name(ev))


def render_sections(sections: Sequence[Section], images: Mapping[str, bytes], *, heading: str, doc_title: str,
                    subtitle: str, source_name: str) -> str:
    """Any list of sections as one self-contained HTML page (the template and style sheet of
    ``report.html``); ``images`` maps the names of the sections' figures to PNG bytes."""
    b64 = {k: base64.b64encode(v).decode("ascii") for k, v in images.items()}
    return _ENV.get_template("report.html.j2").render(
        sections=sections, titles=numbered_titles(sections), heading=heading, doc_title=doc_title, subtitle=subtitle,
        image=b64.__getitem__, verdict_class=verdict_class, source_name=source_name, unknown_block=_unknown_block,
    )


def _unknown_block(kind: str):
    raise TypeError(f"report.html has no layout for a {kind!r} block")

