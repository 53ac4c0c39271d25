"""Rendering email templates: a sandboxed Django template engine, sanitising and plain text.

Promises:
- Only the contact's data (a dict of plain values) is in the context; the engine has no
  loaders and a reduced set of tags and filters (see `sandbox_tags`), and escapes HTML.
- The HTML is sanitised with nh3 when a template is saved and again after rendering (a
  contact's value can never add a script or a `javascript:` link).
- A template that does not render is refused with an error naming the part (subject/html).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any

import nh3
from django.template import Context, Engine

from clm.core.errors import ValidationFailed

UNKNOWN_MARK = "__CLM_UNKNOWN_FIELD__[%s]__"
_UNKNOWN_RE = re.compile(r"__CLM_UNKNOWN_FIELD__\[(.*?)\]__")

CONTACT_FIELDS = ("first_name", "last_name", "email", "job_title", "phone", "country", "region",
                  "city", "timezone", "stage", "source")
LINK_FIELDS = ("unsubscribe_url", "preferences_url")
PART_LABELS = {"subject": "subject", "html_body": "HTML body"}

ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) | {"font"}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}
for _tag in ("table", "td", "th", "tr", "img", "div", "span", "p", "a", "h1", "h2", "h3", "h4",
             "tbody", "thead", "center", "font", "ul", "ol", "li", "strong", "em", "b", "i"):
    ALLOWED_ATTRIBUTES.setdefault(_tag, set()).update({"style", "align", "width", "height",
                                                       "bgcolor", "valign", "border",
                                                       "cellpadding", "cellspacing", "color"})
ALLOWED_ATTRIBUTES["a"].update({"title", "target"})
ALLOWED_CSS = {
    "color", "background", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "line-height", "text-align", "text-decoration", "text-transform",
    "letter-spacing", "vertical-align", "margin", "margin-top", "margin-bottom", "margin-left",
    "margin-right", "padding", "padding-top", "padding-bottom", "padding-left", "padding-right",
    "border", "border-top", "border-bottom", "border-left", "border-right", "border-radius",
    "border-collapse", "border-color", "border-width", "border-style", "width", "max-width",
    "min-width", "height", "display",
}


class SandboxEngine(Engine):
    # Replaces Django's default builtins (which include url, load, include, debug …).
    default_builtins = ["clm.engagement.sandbox_tags"]


def _engine(*, autoescape: bool, strict: bool) -> Engine:
    return SandboxEngine(dirs=[], app_dirs=False, loaders=[], libraries={}, autoescape=autoescape,
                         string_if_invalid=UNKNOWN_MARK if strict else "", debug=False)


_HTML_ENGINE = _engine(autoescape=True, strict=False)
_TEXT_ENGINE = _engine(autoescape=False, strict=False)
_HTML_STRICT = _engine(autoescape=True, strict=True)
_TEXT_STRICT = _engine(autoescape=False, strict=True)


class RenderError(Exception):
    """A template part that does not render; `field` is "subject" or "html_body"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def as_validation(self) -> ValidationFailed:
        return ValidationFailed(self.message, field=self.field, code="template_error")


@dataclass
class Rendered:
    subject: str
    html: str
    text: str


def sanitize_html(html: str) -> str:
    """The HTML with only safe tags, attributes, CSS properties and URL schemes."""
    return nh3.clean(html or "", tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes={"http", "https", "mailto", "tel"},
                     filter_style_properties=ALLOWED_CSS, strip_comments=True,
                     link_rel="noopener noreferrer")


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
              "blockquote", "pre", "hr", "header", "footer", "article", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "a":
            self._href = dict(attrs).get("href")
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a" and self._href is not None:
            text = "".join(self._link_text).strip()
            href = self._href
            self._href = None
            if href and not href.startswith("#") and href != text:
                self.parts.append(f" ({href})" if text else href)

    def handle_data(self, data: str) -> None:
        data = re.sub(r"\s+", " ", data)
        self.parts.append(data)
        if self._href is not None:
            self._link_text.append(data)


def html_to_text(html: str) -> str:
    """A readable plain-text version: paragraphs, line breaks, list items, links as (url)."""
    parser = _TextExtractor()
    parser.feed(html or "")
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def known_fields(property_keys: list[str] | None = None) -> dict[str, Any]:
    """A context holding every merge field a template may use, each empty."""
    ctx: dict[str, Any] = dict.fromkeys(CONTACT_FIELDS, "")
    ctx.update({"full_name": "", "company": "", "tags": [], **dict.fromkeys(LINK_FIELDS, "")})
    props = dict.fromkeys(property_keys or [], "")
    ctx["properties"] = props
    for key in props:
        ctx.setdefault(key, "")
    return ctx


def contact_context(contact, *, extra: dict[str, Any] | None = None,
                    tags: list[str] | None = None) -> dict[str, Any]:
    """The merge fields of one contact: its fields, company name, tags and properties.

    Properties appear under `properties.<key>` and, unless the name is taken by a field,
    also as `<key>`. `extra` (links, workflow data) is added last.
    """
    ctx: dict[str, Any] = {f: (getattr(contact, f, "") or "") for f in CONTACT_FIELDS}
    ctx["full_name"] = f"{contact.first_name} {contact.last_name}".strip()
    company = getattr(contact, "company", None) if contact.company_id else None
    ctx["company"] = company.name if company else ""
    ctx["tags"] = list(tags or [])
    props = {str(k): v for k, v in (contact.properties or {}).items()}
    ctx["properties"] = props
    for key, value in props.items():
        ctx.setdefault(key, value)
    ctx.update(extra or {})
    return ctx


@lru_cache(maxsize=256)
def _compile(engine: Engine, source: str):
    # Compiled once per source text: a broadcast renders the same template thousands of times.
    return engine.from_string(source)


def _render_part(engine: Engine, source: str, context: dict[str, Any], field: str) -> str:
    label = PART_LABELS.get(field, field)
    try:
        template = _compile(engine, source)
        output = template.render(Context(context, autoescape=engine.autoescape))
    except Exception as exc:
        raise RenderError(field, f"The {label} does not render: {exc}") from None
    unknown = _UNKNOWN_RE.search(output)
    if unknown:
        raise RenderError(field, f"The {label} uses an unknown merge field '{unknown.group(1)}'.")
    return output


def render(*, subject: str, html: str, context: dict[str, Any], strict: bool = False) -> Rendered:
    """Render subject and HTML for one context; the text part is generated from the HTML.

    `strict` refuses unknown merge fields (for checking a template against `known_fields`).
    Raises RenderError naming the part that failed.
    """
    text_engine, html_engine = (_TEXT_STRICT, _HTML_STRICT) if strict else \
        (_TEXT_ENGINE, _HTML_ENGINE)
    subject_out = _render_part(text_engine, subject, context, "subject")
    subject_out = " ".join(subject_out.split())[:300]
    if not subject_out and not strict:
        raise RenderError("subject", "The subject renders empty.")
    html_out = sanitize_html(_render_part(html_engine, html, context, "html_body"))
    return Rendered(subject=subject_out, html=html_out, text=html_to_text(html_out))


def template_check(*, subject: str, html: str, property_keys: list[str]) -> None:
    """Refuse (ValidationFailed naming subject/html_body) a template that does not render."""
    if not (subject or "").strip():
        raise ValidationFailed("A template needs a subject.", field="subject", code="required")
    if not (html or "").strip():
        raise ValidationFailed("A template needs an HTML body.", field="html_body",
                               code="required")
    try:
        render(subject=subject, html=html, context=known_fields(property_keys), strict=True)
    except RenderError as exc:
        raise exc.as_validation() from None


_HREF_RE = re.compile(r'(<a\b[^>]*?\bhref=")([^"]*)(")', re.IGNORECASE)


def add_tracking(html: str, *, click_url: Callable[[str], str], open_url: str | None,
                 skip: set[str] | None = None) -> str:
    """Route http(s) links through `click_url(target)` and add an open pixel.

    Works on sanitised HTML (nh3 writes attributes with double quotes). Links in `skip`
    (our own unsubscribe and preference links) are left alone.
    """
    skip = skip or set()

    def repl(match: re.Match) -> str:
        target = html_lib.unescape(match.group(2))
        if not target.lower().startswith(("http://", "https://")) or target in skip:
            return match.group(0)
        return f"{match.group(1)}{html_lib.escape(click_url(target))}{match.group(3)}"

    out = _HREF_RE.sub(repl, html)
    if open_url:
        pixel = (f'<img src="{html_lib.escape(open_url)}" width="1" height="1" alt="" '
                 'style="display:none">')
        out = out.replace("</body>", pixel + "</body>") if "</body>" in out else out + pixel
    return out
