"""Tests for the streaming HTML rewriter (consent_middleware.rewriter)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from unittest import mock

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from consent_middleware import rewriter as rewriter_module
from consent_middleware.rewriter import MAX_TAG_BYTES, HtmlRewriter

H = b"[H]"
B = b"[B]"
# Markers for the properties: bytes no generated document contains (checked with assume()).
HEAD_MARK = b"\xfe{{HEAD-MARK}}\xff"
BODY_MARK = b"\xfe{{BODY-MARK}}\xff"
#: What feed() may hold back at most: one tag under MAX_TAG_BYTES, plus a little.
HOLD_BOUND = 70 * 1024


def stream(chunks: Iterable[bytes], *, head: bytes = H, body: bytes = B) -> bytes:
    rewriter = HtmlRewriter(head_html=head, body_html=body)
    return b"".join(rewriter.feed(chunk) for chunk in chunks) + rewriter.close()


def split_at(doc: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Cut `doc` at the given points, taken modulo its length so they spread over any document."""
    points = sorted({cut % (len(doc) + 1) for cut in cuts})
    return [doc[start:end] for start, end in zip([0, *points], [*points, len(doc)], strict=True)]


def every_split(doc: bytes) -> Iterator[list[bytes]]:
    """The document whole, byte by byte, and cut once at every position."""
    yield [doc]
    yield [doc[i : i + 1] for i in range(len(doc))]
    for cut in range(len(doc) + 1):
        yield [doc[:cut], doc[cut:]]


def assert_rewrites(doc: bytes, expected: bytes) -> None:
    """`doc` rewrites to exactly `expected` whatever the chunk boundaries."""
    for chunks in every_split(doc):
        assert stream(chunks) == expected, chunks


# ------------------------------------------------------------------ insertion positions


def test_inserts_after_head_and_body_start_tags() -> None:
    assert_rewrites(
        b"<!doctype html><html><head><title>T</title></head><body><p>x</p></body></html>",
        b"<!doctype html><html><head>[H]<title>T</title></head><body>[B]<p>x</p></body></html>",
    )


def test_tags_with_attributes() -> None:
    assert_rewrites(
        b"<head lang=en data-x='1'>\n<body\tclass=\"page\" id=main>",
        b"<head lang=en data-x='1'>[H]\n<body\tclass=\"page\" id=main>[B]",
    )


def test_tag_names_match_case_insensitively() -> None:
    assert_rewrites(b"<HEAD></HEAD><BoDy>", b"<HEAD>[H]</HEAD><BoDy>[B]")


def test_gt_inside_quoted_attribute_value_does_not_end_tag() -> None:
    assert_rewrites(
        b"<head data-a='x>y'><BODY class=\"a>b\">", b"<head data-a='x>y'>[H]<BODY class=\"a>b\">[B]"
    )


def test_unquoted_value_and_attribute_oddities() -> None:
    # A quote inside an unquoted value or an attribute name opens nothing; "/" between attributes is
    # ignored; "=" may start an attribute name.
    assert_rewrites(
        b"<head a=b\"c d'e =f g/h>x<body a=/b/>",
        b"<head a=b\"c d'e =f g/h>[H]x<body a=/b/>[B]",
    )


@pytest.mark.parametrize(
    "tag",
    [
        b'<p ="a>b"',  # "=" starts an attribute name, a quote in a name opens nothing: ends at "a>"
        b"<p a = \"x>y\" b\t=\t'<body>'>",  # spaces around "="
        b"<p a= >",  # empty value before ">"
        b'<p/a="x>">',
        b'<p a=x"y>z">',  # a quote inside an unquoted value opens nothing: ends at "y>"
        b"<p a b c='>' d>",
        b"<p a=\"'>\"'>",
        b"<p a='x'b=\">\"c>",  # no space needed after a quoted value
    ],
)
def test_attribute_syntax_decides_where_a_tag_ends(tag: bytes) -> None:
    # Each tag ends before the final <body>, so that one counts (and nothing inside the tag does).
    doc = tag + b"<body>x"
    assert_rewrites(doc, tag + b"<body>[H][B]x")


def test_self_closing_body() -> None:
    assert_rewrites(b"<head/><body/>", b"<head/>[H]<body/>[B]")


def test_missing_head_puts_head_html_before_body_html() -> None:
    assert_rewrites(b"<html><body class=a>x", b"<html><body class=a>[H][B]x")


def test_missing_body_appends_what_is_left_at_the_end() -> None:
    assert_rewrites(b"<html><head></head><p>x", b"<html><head>[H]</head><p>x[B]")


def test_fragment_without_head_or_body() -> None:
    assert_rewrites(b"<p>Hello</p>", b"<p>Hello</p>[H][B]")


def test_empty_page() -> None:
    assert stream([]) == H + B
    assert stream([b""]) == H + B


def test_empty_chunks_change_nothing() -> None:
    assert stream([b"", b"<head>", b"", b"", b"<body>", b""]) == b"<head>[H]<body>[B]"


def test_each_insertion_is_placed_once() -> None:
    assert_rewrites(b"<head><head><body><body>", b"<head>[H]<head><body>[B]<body>")


def test_body_before_head_takes_both() -> None:
    assert_rewrites(b"<body><head>", b"<body>[H][B]<head>")


def test_only_head_html() -> None:
    assert stream([b"<head><body>"], body=b"") == b"<head>[H]<body>"
    assert stream([b"<body>"], body=b"") == b"<body>[H]"


def test_only_body_html() -> None:
    assert stream([b"<head><body>"], head=b"") == b"<head><body>[B]"


# ------------------------------------------------------------------ what is not a head/body tag


def test_lookalike_names_are_not_matched() -> None:
    assert_rewrites(
        b"<header><head-x><head1><bodyx><body-y><head><body>",
        b"<header><head-x><head1><bodyx><body-y><head>[H]<body>[B]",
    )


def test_tags_inside_comments_are_ignored() -> None:
    assert_rewrites(
        b"<!-- <head> <body> --><!----><!-- -- <body> - --><head><body>",
        b"<!-- <head> <body> --><!----><!-- -- <body> - --><head>[H]<body>[B]",
    )


def test_empty_comment_quirks() -> None:
    # "<!-->" and "<!--->" are complete (empty) comments.
    assert_rewrites(b"<!--><head><!---><body>", b"<!--><head>[H]<!---><body>[B]")


def test_comment_ends_at_bang_form_but_not_at_its_own_opening() -> None:
    # "--!>" ends a comment; the "--" of "<!--" does not start an end ("<!--!>" stays open).
    assert_rewrites(
        b"<!-- x --!><head><!--!><body>--><body>", b"<!-- x --!><head>[H]<!--!><body>--><body>[B]"
    )


def test_nested_comment_opener_does_not_nest() -> None:
    assert_rewrites(b"<!-- <!-- --><body>--><body>", b"<!-- <!-- --><body>[H][B]--><body>")


def test_doctype_and_bogus_comments_end_at_first_gt() -> None:
    assert_rewrites(
        b'<!DOCTYPE html "<head>"><?xml <body>?><![CDATA[<body>]]></ <body>></><head><body>',
        b'<!DOCTYPE html "<head>"><?xml <body>?><![CDATA[<body>]]></ <body>></><head>[H]<body>[B]',
    )


def test_tags_inside_attribute_values_are_not_matched() -> None:
    assert_rewrites(
        b"<a title=\"<head>\" alt='<body>' x=<body><head><body>",
        b"<a title=\"<head>\" alt='<body>' x=<body><head>[H]<body>[B]",
    )


def test_lt_not_starting_a_tag_is_text() -> None:
    assert_rewrites(b"a < b <1> << <=3 < body><body>", b"a < b <1> << <=3 < body><body>[H][B]")


def test_end_tags_are_skipped_with_their_quoted_attributes() -> None:
    assert_rewrites(b'</head><p></p x=">"<body>"><body>', b'</head><p></p x=">"<body>"><body>[H][B]')


@pytest.mark.parametrize(
    "element", [b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes"]
)
def test_raw_text_element_content_is_not_markup(element: bytes) -> None:
    upper = element.upper()
    raw = b"<%b a='>'><head><!--<body></%bx>--><%b></%b>" % (element, element, element, upper)
    assert_rewrites(raw + b"<head><body>", raw + b"<head>[H]<body>[B]")


def test_raw_text_end_tag_variants() -> None:
    for end in (b"</script>", b"</SCRIPT >", b"</Script/>", b"</script\n>", b"</script\tdata-x='>'>"):
        assert_rewrites(b"<script><body>" + end + b"<body>", b"<script><body>" + end + b"<body>[H][B]")


def test_raw_text_needs_an_exact_end_tag_name() -> None:
    assert_rewrites(
        b"<script></scriptx><body></scrip><body></ script><body></script><body>",
        b"<script></scriptx><body></scrip><body></ script><body></script><body>[H][B]",
    )


def test_script_string_splitting_trick() -> None:
    doc = b'<script>document.write("<body></scr" + "ipt>");</script><body>'
    assert_rewrites(doc, doc + H + B)


def test_script_escape_with_nested_script_is_not_closed_by_end_tag() -> None:
    # Browsers: after "<!--" then "<script>" inside a script, "</script>" does not end it; "-->" does.
    doc = b"<script><!--<script></script><body>--></script><body>"
    assert_rewrites(doc, doc + H + B)


def test_script_escape_without_nested_script_ends_at_end_tag() -> None:
    assert_rewrites(b"<script><!-- x </script><body>", b"<script><!-- x </script><body>[H][B]")


def test_self_closing_script_still_opens_raw_text() -> None:
    assert_rewrites(b"<script/><body></script><body>", b"<script/><body></script><body>[H][B]")


def test_plaintext_makes_the_rest_text() -> None:
    assert_rewrites(b"<head><plaintext></plaintext><body>", b"<head>[H]<plaintext></plaintext><body>[B]")


def test_noscript_is_not_raw_text() -> None:
    assert_rewrites(b"<noscript><body></noscript>", b"<noscript><body>[H][B]</noscript>")


def test_unterminated_constructs_at_end_of_stream() -> None:
    for doc in (
        b"<body",
        b"<body class='>",
        b"<!-- <body>",
        b"<script><body>",
        b"<!DOCTYPE <body",
        b"<",
        b"</",
    ):
        assert_rewrites(doc, doc + H + B)


# ------------------------------------------------------------------ bytes, not text


def test_any_ascii_compatible_bytes_pass_unchanged() -> None:
    doc = "<head><title>é€😀</title><body>ü".encode() + b"\x00\xff\xfe<\x80body>"
    expected = "<head>[H]<title>é€😀</title><body>[B]ü".encode() + b"\x00\xff\xfe<\x80body>"
    assert_rewrites(doc, expected)
    latin1 = "<body>café".encode("latin-1")
    assert stream([latin1]) == b"<body>[H][B]caf\xe9"


def test_nul_bytes_in_names_and_values() -> None:
    assert_rewrites(b"<bo\x00dy><a \x00='\x00>'><body>", b"<bo\x00dy><a \x00='\x00>'><body>[H][B]")


# ------------------------------------------------------------------ streaming


def test_feed_returns_decided_bytes_at_once() -> None:
    rewriter = HtmlRewriter(head_html=H, body_html=B)
    assert rewriter.feed(b"<html><p>text") == b"<html><p>text"
    assert rewriter.feed(b" more <") == b" more "
    assert rewriter.feed(b"he") == b""
    assert rewriter.feed(b"ad class=x") == b""
    assert rewriter.feed(b">rest <!-") == b"<head class=x>[H]rest "
    assert rewriter.feed(b"- a -") == b"<!-- a "
    assert rewriter.feed(b"- b --") == b"-- b "
    assert rewriter.feed(b"><body>") == b"--><body>[B]"
    assert rewriter.close() == b""


def test_pass_through_after_both_insertions() -> None:
    rewriter = HtmlRewriter(head_html=H, body_html=B)
    assert rewriter.feed(b"<head><body>") == b"<head>[H]<body>[B]"
    chunk = b"<script><!-- <body> unterminated"
    assert rewriter.feed(chunk) is chunk
    assert rewriter.close() == b""


def test_pass_through_from_the_start_when_nothing_to_insert() -> None:
    rewriter = HtmlRewriter()
    chunk = b"<head><body"
    assert rewriter.feed(chunk) is chunk
    assert rewriter.close() == b""


def test_tag_longer_than_bound_is_streamed_and_tracked() -> None:
    # An over-long <body> whose quoted value holds ">" and "<head>": it is passed on unbuffered,
    # and body_html still goes right after its real ">".
    value = b"x>" * MAX_TAG_BYTES + b"<head>"
    doc = b"<body data-v='" + value + b'\' other="a>b">after<head>'
    rewriter = HtmlRewriter(head_html=H, body_html=B)
    out = []
    fed = 0
    for start in range(0, len(doc), 1000):
        chunk = doc[start : start + 1000]
        out.append(rewriter.feed(chunk))
        fed += len(chunk)
        assert fed - len(b"".join(out)) <= HOLD_BOUND
    out.append(rewriter.close())
    assert b"".join(out) == doc.replace(b'"a>b">', b'"a>b">[H][B]')


@pytest.mark.parametrize(
    ("opening", "filler"),
    [
        (b"<!--", b"- -- --! <body> "),
        (b"<script>", b"</scrip <body> <!-- "),
        (b"<script><!--<script>", b"</script> -- <body> "),
        (b"<textarea>", b"</textare <body> "),
        (b"<!DOCTYPE ", b"<body "),
        (b"<div title='", b"<body> > "),
        (b"<div", b"x" * 20),
    ],
)
def test_unterminated_construct_streams_in_bounded_memory(opening: bytes, filler: bytes) -> None:
    rewriter = HtmlRewriter(head_html=H, body_html=B)
    chunk = filler * (64 * 1024 // len(filler))
    fed = len(opening)
    sent = len(rewriter.feed(opening))
    for _ in range(4 * 1024 * 1024 // len(chunk)):  # about 4 MB
        sent += len(rewriter.feed(chunk))
        fed += len(chunk)
        assert fed - sent <= HOLD_BOUND
    assert sent + len(rewriter.close()) == fed + len(H + B)


def test_one_megabyte_page_is_fast() -> None:
    # Generous bound: catches super-linear behaviour, not a benchmark.
    unit = (
        b'<div class="row" data-x=\'1\'><a href="/p?q=1&amp;r=2">link \xc3\xa9</a> text text &lt; 3 '
        b"<img src=x.png alt=''><!-- note --></div>\n<script>if (a < b) { x = '</div>'; }</script>\n"
    )
    doc = b"<html><head><title>T</title></head>" + unit * (1024 * 1024 // len(unit)) + b"<body>end"
    chunks = [doc[i : i + 65536] for i in range(0, len(doc), 65536)]
    started = time.perf_counter()
    out = stream(chunks)
    elapsed = time.perf_counter() - started
    assert out == doc.replace(b"<head>", b"<head>[H]").replace(b"<body>", b"<body>[B]")
    assert elapsed < 1.0


# ------------------------------------------------------------------ properties

_NAMES = [
    "head", "HEAD", "Head", "body", "BODY", "bOdY", "header", "bodyx", "head-x", "html", "p", "a", "img",
    "script", "SCRIPT", "style", "textarea", "title", "TITLE", "xmp", "iframe", "noembed", "noframes",
    "noscript", "plaintext",
]  # fmt: skip
_WS = st.sampled_from(["", " ", "  ", "\t", "\n", "\f", "\r\n", "/", " / "])
_VALUES = st.sampled_from(
    [
        '"a>b"',
        "'c>d'",
        '"<body>"',
        "'<head>'",
        "x",
        "x>y",
        '"',
        "'",
        '""',
        "''",
        "/",
        "=",
        "a'b",
        'a"b',
        "<body",
    ]
)
_ATTRIBUTE = st.builds(
    lambda name, before, eq, after, value: f" {name}{before}{eq}{after}{value}",
    st.sampled_from(["class", "x", "=", '"q', "a'", "<head", "data-<body>"]),
    st.sampled_from(["", " "]),
    st.sampled_from(["", "="]),
    st.sampled_from(["", " ", "\n"]),
    _VALUES,
)
_START_TAG = st.builds(
    lambda name, attributes, space, end: f"<{name}{''.join(attributes)}{space}{end}",
    st.sampled_from(_NAMES),
    st.lists(_ATTRIBUTE, max_size=3),
    _WS,
    st.sampled_from([">", "/>", ">", ""]),
)
_END_TAG = st.builds(
    lambda name, space, end: f"</{name}{space}{end}",
    st.sampled_from(_NAMES),
    st.sampled_from(["", " ", "\t", "/", " x='>'"]),
    st.sampled_from([">", ""]),
)
_MARKUP = st.sampled_from(
    [
        "<!--", "-->", "--!>", "<!-->", "<!--->", "<!---->", "<!--!>", "<!-- <body> -->", "-", "--",
        "<!", "<!-",
        "<!DOCTYPE html>", "<!doctype x \"a>b\">", "<?xml version='1.0'?>", "<?", "</ x>", "</>", "</",
        "<![CDATA[<body>]]>", "<", ">", "<1", "< body>", "&amp;",
    ]
)  # fmt: skip
_TRICKY_CONTENT = st.sampled_from(
    [
        'x = "</scr" + "ipt>";', "<body>", "<head>", "<!--", "-->", "<script>", "</script", "</script ",
        "</SCRIPT>", "</style >", "</textarea/>", "</title\n>", "</xmp>", "a < b",
        "<!-- <script> x </script> -->",
    ]
)  # fmt: skip
_RAW_BLOCK = st.builds(
    lambda name, parts, end: f"<{name}>{''.join(parts)}{end}",
    st.sampled_from(["script", "style", "textarea", "title", "xmp", "iframe", "Script", "STYLE"]),
    st.lists(_TRICKY_CONTENT, max_size=4),
    st.sampled_from(
        ["</script>", "</style>", "</textarea>", "</title>", "</xmp>", "</iframe>", "</SCRIPT >", ""]
    ),
)
_TEXT = st.text(alphabet="abc é€😀<>&/\"'=-! \n\x00", max_size=12)
_PIECE = st.one_of(
    _TEXT.map(str.encode),
    _START_TAG.map(str.encode),
    _END_TAG.map(str.encode),
    _MARKUP.map(str.encode),
    _RAW_BLOCK.map(str.encode),
    st.binary(max_size=6),
)
HTMLISH = st.lists(_PIECE, max_size=30).map(b"".join)
CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)


def _assert_markers_inserted_once(doc: bytes, out: bytes) -> None:
    assert out.count(HEAD_MARK) == 1
    assert out.count(BODY_MARK) == 1
    assert out.replace(HEAD_MARK, b"").replace(BODY_MARK, b"") == doc


@given(doc=HTMLISH, cuts=CUTS)
def test_output_does_not_depend_on_chunk_boundaries(doc: bytes, cuts: list[int]) -> None:
    whole = stream([doc], head=HEAD_MARK, body=BODY_MARK)
    assert stream(split_at(doc, cuts), head=HEAD_MARK, body=BODY_MARK) == whole
    assert stream([doc[i : i + 1] for i in range(len(doc))], head=HEAD_MARK, body=BODY_MARK) == whole


@given(doc=HTMLISH, cuts=CUTS)
def test_output_is_input_plus_markers(doc: bytes, cuts: list[int]) -> None:
    assume(HEAD_MARK not in doc and BODY_MARK not in doc)
    out = stream(split_at(doc, cuts), head=HEAD_MARK, body=BODY_MARK)
    _assert_markers_inserted_once(doc, out)
    # The head marker, when placed in the page, follows a ">" (of a head or body start tag).
    at = out.index(HEAD_MARK)
    assert at == len(out) - len(HEAD_MARK + BODY_MARK) or out[at - 1 : at] == b">"


@given(doc=st.binary(max_size=300), cuts=CUTS)
def test_arbitrary_bytes_never_raise(doc: bytes, cuts: list[int]) -> None:
    assume(HEAD_MARK not in doc and BODY_MARK not in doc)
    out = stream(split_at(doc, cuts), head=HEAD_MARK, body=BODY_MARK)
    _assert_markers_inserted_once(doc, out)
    assert stream([doc], head=HEAD_MARK, body=BODY_MARK) == out


@given(doc=HTMLISH, cuts=CUTS)
def test_over_long_tags_are_tracked_like_buffered_ones(doc: bytes, cuts: list[int]) -> None:
    # With a tiny bound nearly every split tag is streamed unbuffered; the output must not change.
    whole = stream([doc], head=HEAD_MARK, body=BODY_MARK)
    with mock.patch.object(rewriter_module, "MAX_TAG_BYTES", 3):
        assert stream(split_at(doc, cuts), head=HEAD_MARK, body=BODY_MARK) == whole
        assert stream([doc[i : i + 1] for i in range(len(doc))], head=HEAD_MARK, body=BODY_MARK) == whole


#: A skip pattern that skips nothing but text: the rewriter then reads every tag the exact way.
STOP_EVERYWHERE = re.compile(rb"[^<]*+")


@given(doc=HTMLISH, cuts=CUTS)
def test_fast_path_reads_tags_as_the_exact_path_does(doc: bytes, cuts: list[int]) -> None:
    fast = stream([doc], head=HEAD_MARK, body=BODY_MARK)
    with mock.patch.object(rewriter_module, "_INSERTION_SKIP_RE", STOP_EVERYWHERE):
        assert stream(split_at(doc, cuts), head=HEAD_MARK, body=BODY_MARK) == fast
