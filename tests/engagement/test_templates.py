"""Templates: merge fields in a sandbox, sanitised HTML, generated text, clear refusals."""

from __future__ import annotations

import pytest

from clm.core.errors import ValidationFailed
from clm.customers.services import property_definition_create
from clm.engagement.rendering import contact_context, render
from clm.engagement.services import template_save
from tests.factories import CompanyFactory, ContactFactory

pytestmark = pytest.mark.django_db


def _save(subject="Hi", html="<p>Hi</p>", **extra):
    return template_save(data={"name": extra.pop("name", "T"), "subject": subject,
                               "html_body": html, **extra})


def test_merge_fields_from_contact_fields_and_properties():
    property_definition_create(object_type="contact", key="plan", label="Plan", type="text")
    template = _save(subject='Hello {{ first_name|default:"there" }}',
                     html="<p>{{ full_name }} at {{ company }} on {{ plan|upper }} "
                          "({{ properties.plan }})</p>")
    contact = ContactFactory(first_name="Ada", last_name="Byron",
                             company=CompanyFactory(name="Engines & Co"),
                             properties={"plan": "pro"})
    out = render(subject=template.subject, html=template.html_body,
                 context=contact_context(contact))
    assert out.subject == "Hello Ada"
    assert out.html == "<p>Ada Byron at Engines &amp; Co on PRO (pro)</p>"
    assert out.text.strip() == "Ada Byron at Engines & Co on PRO (pro)"
    nameless = ContactFactory(first_name="")
    assert render(subject=template.subject, html="x",
                  context=contact_context(nameless)).subject == "Hello there"


def test_contact_values_are_escaped_and_cannot_inject_html():
    contact = ContactFactory(first_name='<script>alert(1)</script><a href="javascript:x">')
    out = render(subject="{{ first_name }}", html="<p>{{ first_name }}</p>",
                 context=contact_context(contact))
    assert "<script" not in out.html and "<a " not in out.html  # text, not markup
    assert "&lt;script&gt;" in out.html


def test_html_is_sanitised_and_text_part_generated():
    template = _save(html='<h1 style="color:red;position:fixed">News</h1><script>x()</script>'
                          '<p onclick="x()">Read <a href="https://a.example/x">more</a><br>now</p>'
                          '<a href="javascript:alert(1)">bad</a><ul><li>one</li></ul>')
    assert "<script>" not in template.html_body and "onclick" not in template.html_body
    assert "javascript:" not in template.html_body
    assert 'style="color:red"' in template.html_body
    assert template.text_body == "News\n\nRead more (https://a.example/x)\nnow\n\nbad\n\n- one\n"


@pytest.mark.parametrize(("subject", "html", "field", "needle"), [
    ("Hi {{ frist_name }}", "<p>x</p>", "subject", "frist_name"),
    ("Hi", "<p>{{ first_name|nosuchfilter }}</p>", "html_body", "nosuchfilter"),
    ("Hi {% if %}", "<p>x</p>", "subject", "subject"),
    ("Hi", "<p>{% load static %}</p>", "html_body", "load"),
    ("Hi", '<p>{% include "web/base.html" %}</p>', "html_body", "include"),
    ("Hi", "<p>{% debug %}</p>", "html_body", "debug"),
    ("Hi", "<p>{{ first_name|safe }}</p>", "html_body", "safe"),
    ("Hi", "<p>{% url 'login' %}</p>", "html_body", "url"),
    ("", "<p>x</p>", "subject", "required"),
])
def test_templates_that_do_not_render_are_refused_naming_the_part(subject, html, field, needle):
    with pytest.raises(ValidationFailed) as exc:
        _save(subject=subject, html=html)
    assert exc.value.field == field
    assert needle in exc.value.message or needle == exc.value.code or needle == field


def test_known_links_and_tags_are_allowed():
    template = _save(html='<p>{% for t in tags %}{{ t }}{% endfor %}</p>'
                          '<a href="{{ unsubscribe_url }}">u</a> <a href="{{ preferences_url }}">p</a>')
    assert "{{ unsubscribe_url }}" in template.html_body


def test_padding_filters_cannot_build_huge_strings():
    from clm.engagement.rendering import render
    from clm.engagement.sandbox_tags import MAX_PAD_WIDTH

    for name in ("center", "ljust", "rjust"):
        out = render(subject="x", html=f"<p>{{{{ first_name|{name}:999999999 }}}}</p>",
                     context={"first_name": "Ada"})
        assert MAX_PAD_WIDTH <= len(out.html) < MAX_PAD_WIDTH + 20, name
    assert "  Ada  " in render(subject="x", html="<p>{{ first_name|center:7 }}</p>",
                              context={"first_name": "Ada"}).html


def test_loops_and_size_arguments_cannot_burn_a_render():
    from clm.engagement.rendering import RenderError, render
    from clm.engagement.sandbox_tags import MAX_DECIMALS, MAX_LOOP_STEPS

    letters = "x" * 40
    nested = "".join(f'{{% for {v} in "{letters}"|make_list %}}' for v in "abcde") + "." + \
        "{% endfor %}" * 5  # 40**5 = 102 million steps unbounded
    with pytest.raises(RenderError) as exc:
        render(subject="x", html=f"<p>{nested}</p>", context={})
    assert f"{MAX_LOOP_STEPS:,} steps" in exc.value.message
    fine = "{% for a in tags %}{% for b in tags %}[{{ a }}{{ b }}]{% endfor %}{% endfor %}"
    out = render(subject="x", html=f"<p>{fine}</p>", context={"tags": ["p", "q"]})
    assert "[pp][pq][qp][qq]" in out.html
    wide = render(subject="x", html="<p>{{ n|floatformat:99999999 }}|{{ n|floatformat:2 }}</p>",
                  context={"n": 1.5})
    assert f"1.{'5'.ljust(MAX_DECIMALS, '0')}|1.50" in wide.html
    padded = render(subject="x", html='<p>[{{ n|stringformat:"099999999d" }}]'
                                      '[{{ n|stringformat:"05d" }}]</p>', context={"n": 7})
    assert "[][00007]" in padded.html
