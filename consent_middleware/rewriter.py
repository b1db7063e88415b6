"""Streaming HTML rewriter: injects markup into an HTML response while it streams, and gates the
elements of refused categories (SPEC §3).

The rewriter reads raw bytes and never decodes the page, so it works for any ASCII-compatible
charset: everything it looks for (``<``, ``>``, quotes, tag and attribute names) is ASCII, and every
byte it does not insert is passed on unchanged. It is a small tokenizer following the states of the
WHATWG HTML tokenizer that matter for finding real start tags: tags with quoted attribute values,
comments (with their ``<!-->`` quirks), bogus comments (``<!DOCTYPE>``, ``<?xml?>``, ``</ x>``), the
raw text of ``script``/``style``/``textarea``/... and ``<plaintext>``. ``<noscript>`` content is
ordinary markup (a browser without scripts reads it so), so elements inside it are gated too.
Foreign content is not modelled: inside ``<svg>`` a ``<style>`` or ``<script>`` is read as the HTML
element would be.

Speed: one compiled, case-sensitive regex (:func:`_skip_pattern`) skips, in C, runs of text and
whole ordinary tags (quoted values, complete comments and doctypes included) and stops only where
Python has work to do: start tags of the raw-text elements and of ``head``/``body``; when gating,
also tags with a ``data-consent`` attribute, ``script``/``iframe`` start tags, and
``img``/``image``/``source``/``link`` start tags whose values may name a host; and any unusual or
unfinished construct, which the exact (slower) path then reads. The fast pattern accepts a tag only
in a simple form whose end it knows for certain, so it never changes the output (a property test
compares both paths). The regex engine's per-tag cost bounds the speed on tag-dense pages; each
element acted on costs a few microseconds of Python.

Streaming: ``feed`` returns everything it can decide and holds back only an undecided tail: an
unfinished tag of at most :data:`MAX_TAG_BYTES`, the few bytes that may begin ``<!--``, ``-->`` or
a raw-text end tag, or, when gating, an inline script up to its end tag (at most
:data:`MAX_INLINE_SCRIPT_BYTES` of body). Once every insertion is placed and nothing is to be
gated (no policy, or one refusing nothing), the rewriter becomes a pass-through.

Gating (with a :class:`~consent_middleware.gating.GatePolicy` that refuses something; what is gated
is listed in :mod:`consent_middleware.gating`) makes an element inert in a reversible way:
attributes are inserted right after the tag name and existing attribute names are prefixed, values
are never rewritten:

- every gated element gets `` data-consent="CAT"`` (unless it has a ``data-consent`` attribute);
- a script also gets `` type="text/plain"``, and each ``type`` attribute it had becomes
  ``data-consent-type``; other elements have each ``src``, ``href``, ``srcset`` and
  ``imagesrcset`` attribute renamed ``data-consent-src`` (...), every occurrence (a browser reads
  the first of duplicates, so renaming only that one would let the next load);
- a gated iframe gets the ``placeholder(category)`` markup right before it, unless it is an
  invisible tracking frame (``width`` or ``height`` 0, ``display:none``, ``visibility:hidden``),
  where a placeholder would add a box that was never there, or its ``data-consent`` names no
  category of the registry (``placeholder`` is only ever called with a registry category).

Which elements are looked at: ``script`` (``src``), ``iframe`` (``src``), ``img`` (``src``,
``srcset``), ``image`` (browsers read it as ``img``; also ``href`` for the SVG one), ``source``
(``src``, ``srcset``), ``link`` (``href``, ``imagesrcset``, only with a ``rel`` that loads or
connects), inline scripts by their body, and any element with ``data-consent``. Of duplicate
attributes the first counts. A script that does not run (``type`` neither empty, ``module`` nor a
JavaScript MIME type) is never touched, ``data-consent`` or not. An explicit ``data-consent``
decides over what the URL or body would say (the operator's word: ``data-consent="necessary"``
exempts a script, e.g. a minified one calling its own function ``ga``).

Limits, by design: a start tag longer than :data:`MAX_TAG_BYTES` is streamed unchanged, never
gated; an inline script whose body exceeds :data:`MAX_INLINE_SCRIPT_BYTES` is passed through
ungated (deciding needs its whole body, and holding more would let one page hold unbounded memory
and delay the response); an inline script still open when the stream ends is decided on the body
it has.
"""

from __future__ import annotations

import enum
import html
import re
import string
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable
from typing import ClassVar, Final, NamedTuple, TypeAlias

from .gating import MAX_MEMO, MAX_MEMO_BYTES, GatePolicy

__all__ = ["MAX_INLINE_SCRIPT_BYTES", "MAX_TAG_BYTES", "HtmlRewriter", "PageCache"]

#: A tag longer than this is not buffered: it is passed on unchanged as it streams (its quotes are
#: still tracked so scanning resumes after its real end). Bounds what ``feed`` may hold back.
MAX_TAG_BYTES: Final = 64 * 1024
#: An inline script is held until its end tag to decide whether it is gated; one whose body is
#: longer than this is passed through ungated.
MAX_INLINE_SCRIPT_BYTES: Final = 256 * 1024

HEAD: Final = b"head"
BODY: Final = b"body"
SCRIPT: Final = b"script"
PLAINTEXT: Final = b"plaintext"
IFRAME: Final = b"iframe"
LINK: Final = b"link"

#: Elements whose content is text up to their own end tag (RAWTEXT and RCDATA in the HTML spec).
#: ``script`` has extra escape rules and ``noscript`` is deliberately absent: tags inside it are
#: real for a browser without scripts, and gating rewrites them.
RAW_TEXT_ELEMENTS: Final = frozenset(
    {b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes"}
)

#: Per element gated for its URLs: the attributes holding them (``image`` is read as ``img`` by
#: browsers, and as an SVG image with ``href`` inside ``<svg>``).
URL_ATTRIBUTES: Final = {
    SCRIPT: (b"src",),
    IFRAME: (b"src",),
    b"img": (b"src", b"srcset"),
    b"image": (b"src", b"srcset", b"href"),
    b"source": (b"src", b"srcset"),
    LINK: (b"href", b"imagesrcset"),
}
_SRCSET_ATTRIBUTES: Final = frozenset({b"srcset", b"imagesrcset"})
#: The attributes a gated element other than a script has renamed.
RENAMED_ATTRIBUTES: Final = frozenset({b"src", b"href", b"srcset", b"imagesrcset"})
#: A ``link`` is gated only when it loads or connects: one of these in its ``rel``.
LINK_RELS: Final = frozenset(
    {b"preconnect", b"dns-prefetch", b"preload", b"modulepreload", b"prefetch", b"stylesheet"}
)
#: Script types a browser runs (besides none, empty and "module"); parameters are ignored here,
#: so a script that a browser would not run is gated rather than one that it runs left alone.
JAVASCRIPT_TYPES: Final = frozenset(
    {
        b"application/ecmascript", b"application/javascript", b"application/x-ecmascript",
        b"application/x-javascript", b"text/ecmascript", b"text/javascript", b"text/javascript1.0",
        b"text/javascript1.1", b"text/javascript1.2", b"text/javascript1.3", b"text/javascript1.4",
        b"text/javascript1.5", b"text/jscript", b"text/livescript", b"text/x-ecmascript",
        b"text/x-javascript", b"module",
    }
)  # fmt: skip
MARKER: Final = b"data-consent"
_RENAME_PREFIX: Final = b"data-consent-"
_INERT_TYPE: Final = b' type="text/plain"'

_Buffer: TypeAlias = bytes | bytearray

_ASCII_LETTERS: Final = frozenset(string.ascii_letters.encode())
_WHITESPACE: Final = b"\t\n\f\r "  # HTML whitespace: no \v, unlike regex \s
#: Bytes that end a tag name (and so decide whether ``</script`` really is the script's end tag).
_TAG_NAME_END: Final = frozenset(_WHITESPACE + b"/>")

_SLASH: Final = ord("/")
_BANG: Final = ord("!")
_QUESTION: Final = ord("?")
_DASH: Final = ord("-")
_GT: Final = ord(">")

_COMMENT_OPEN: Final = b"<!--"
#: A comment ends at ``-->`` or ``--!>``; the shorter quirky endings are handled at its start.
_COMMENT_END_RE: Final = re.compile(rb"--!?>")
_COMMENT_END_PREFIXES: Final = (b"--!", b"--", b"-")
#: In a script only "</" (maybe its end tag) and "<!" (maybe "<!--") change state.
_SCRIPT_MARKUP_RE: Final = re.compile(rb"<[/!]")
#: Inside ``<!--`` in a script, both ``<`` (maybe ``</script``) and ``-->`` change state.
_SCRIPT_ESCAPE_RE: Final = re.compile(rb"<|-->")
_SCRIPT_ESCAPE_END_PREFIXES: Final = (b"--", b"-")

#: One complete start or end tag from its ``<``, following the spec's attribute states. Possessive
#: quantifiers make it deterministic, so a failed match always means "the tag is not finished in
#: this buffer", never "some other parse would end elsewhere". Group 1 is the tag name.
_COMPLETE_TAG_RE: Final = re.compile(
    rb"</?([A-Za-z][^\t\n\f\r />]*+)"
    rb"(?:[\t\n\f\r /]++"  # separators; a stray "/" acts like whitespace
    rb"|[^\t\n\f\r />][^\t\n\f\r />=]*+"  # an attribute name (its first byte may be "=")
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"  # ... with a value: quoted, unquoted or empty before ">"
    rb"(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'][^\t\n\f\r >]*+|(?=>))"
    rb"|(?![\t\n\f\r ]*+=))"  # ... or without one
    rb")*+>"
)
#: One attribute of a complete tag, from after the tag name or the previous attribute, with the
#: same reading as _COMPLETE_TAG_RE. Group 1 is the name, the value is group 2 (double-quoted), 3
#: (single-quoted) or 4 (unquoted). No value and an empty one are read alike: none of the uses
#: here tells them apart (an empty ``type`` is JavaScript, an empty ``data-consent`` no category).
_ATTRIBUTE_RE: Final = re.compile(
    rb"[\t\n\f\r /]*+([^\t\n\f\r />][^\t\n\f\r />=]*+)"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:\"([^\"]*+)\"|'([^']*+)'|([^\t\n\f\r >\"'][^\t\n\f\r >]*+)|(?=>)))?"
)


def _any_case(literal: bytes) -> bytes:
    """A pattern matching ``literal`` (lower case) in any ASCII case, without re.IGNORECASE."""
    return b"".join(
        b"[%c%c]" % (byte, byte - 32) if 97 <= byte <= 122 else re.escape(bytes([byte])) for byte in literal
    )


def _skip_pattern(
    stop_names: Iterable[bytes], *, stop_at_marker: bool, hostless_names: Iterable[bytes] = ()
) -> re.Pattern[bytes]:
    """The fast path: a pattern whose match from any position of the DATA state ends at the next
    ``<`` that Python must read (or at the end of the buffer).

    It consumes text, a ``<`` that starts no tag, complete comments and bogus comments, complete
    end tags and complete start tags whose name is not in ``stop_names`` (and, with
    ``stop_at_marker``, that have no ``data-consent`` attribute). A tag is consumed only in a simple
    form whose end is certain: attribute names without quotes or a leading "=", values right after
    "=" (quoted or not), separated by whitespace or "/". Any other tag stops the match, as does any
    construct not finished in the buffer; the exact path reads it.

    A start tag named in ``hostless_names`` (also in ``stop_names``) is consumed too when none of
    its values can hold a URL with a host: no ":" (no scheme), no "\\" and no "//" (not even with
    tabs or newlines between, which URL parsing drops), no "&" (no character reference hiding one).
    """
    by_first: dict[int, list[bytes]] = {}
    for name in stop_names:
        by_first.setdefault(name[0], []).append(name[1:])
    plain_letters = bytes(byte for byte in range(ord("a"), ord("z") + 1) if byte not in by_first)
    # First letter of a tag name that is no stop name: letters no stop name starts with, or one
    # that does when what follows does not complete a stop name.
    name_starts = [b"[" + plain_letters + plain_letters.upper() + b"]"]
    for first, rests in sorted(by_first.items()):
        rest = b"|".join(_any_case(tail) for tail in sorted(rests, key=len, reverse=True))
        name_starts.append(_any_case(bytes([first])) + rb"(?!(?:" + rest + rb")[\t\n\f\r />])")
    attribute_start = rb"[^\t\n\f\r />=\"']"
    if stop_at_marker:
        attribute_start = rb"(?:[^\t\n\f\r />=\"'dD]|[dD](?!" + _any_case(MARKER[1:]) + rb"[\t\n\f\r />=]))"

    def attributes(double: bytes, single: bytes, unquoted: bytes) -> bytes:
        """Attributes up to the tag's ">", each value a run of the given value patterns."""
        return (
            rb"(?:[\t\n\f\r /]++"
            + attribute_start
            + rb"[^\t\n\f\r />=\"']*+"
            + rb"(?:=(?:\""
            + double
            + rb"\"|'"
            + single
            + rb"'|"
            + unquoted
            + rb")|)"
            + rb")*+[\t\n\f\r /]*+>"
        )

    tag_rest = (
        rb"[^\t\n\f\r />]*+(?:>|"
        + attributes(rb"[^\"]*+", rb"[^']*+", rb"[^\t\n\f\r >\"'][^\t\n\f\r >]*+")
        + rb")"
    )
    alternatives = [(rb"(?:/[A-Za-z]|" + b"|".join(name_starts) + rb")") + tag_rest]  # end or start tag
    hostless = b"|".join(_any_case(name) for name in sorted(hostless_names, key=len, reverse=True))
    if hostless:
        # A "/" not followed (maybe after tabs and newlines) by another: no "//" in the value.
        slash = rb"/(?![\t\n\r]*+/)"
        alternatives.append(
            rb"(?:"
            + hostless
            + rb")(?=[\t\n\f\r />])"
            + attributes(
                rb"(?:[^\"\\:&/]++|" + slash + rb")*+",
                rb"(?:[^'\\:&/]++|" + slash + rb")*+",
                rb"(?:[^\t\n\f\r >\"'\\:&/]|" + slash + rb")(?:[^\t\n\f\r >\\:&/]++|" + slash + rb")*+",
            )
        )
    alternatives += [
        rb"!--(?:-?>|(?:[^-]++|-(?!-!?>))*+--!?>)",  # a comment, "<!-->" and "<!--->" included
        rb"!(?!--)[^>]*+>",  # <!DOCTYPE ...>, <![CDATA[...]> and any <!...>: up to the first ">"
        rb"\?[^>]*+>",
        rb"/(?![A-Za-z])[^>]*+>",  # "</>", "</ x>"
        rb"(?=[^A-Za-z/!?])",  # a "<" that starts nothing
    ]
    return re.compile(rb"(?:[^<]*+<(?:" + b"|".join(alternatives) + rb"))*+[^<]*+")


_RAW_TEXT_STARTS: Final = RAW_TEXT_ELEMENTS | {SCRIPT, PLAINTEXT}
#: While only insertions are due: stop at what changes the tokenizer state and at head/body.
_INSERTION_SKIP_RE: Final = _skip_pattern(_RAW_TEXT_STARTS | {HEAD, BODY}, stop_at_marker=False)
#: While gating: also at every element gated for its URLs that may name a host, and at
#: data-consent attributes.
_GATING_SKIP_RE: Final = _skip_pattern(
    _RAW_TEXT_STARTS | {HEAD, BODY} | URL_ATTRIBUTES.keys(),
    stop_at_marker=True,
    hostless_names=URL_ATTRIBUTES.keys() - _RAW_TEXT_STARTS,
)


def _attributes(tag: bytes, at: int) -> dict[bytes, bytes]:
    """The attributes of the complete tag ``tag`` read from ``at`` (just after the tag name): lower
    case name to value as written (character references not decoded). Of several attributes of one
    name, the first counts, as in a browser."""
    return {
        name.lower(): double or single or unquoted
        for name, double, single, unquoted in reversed(_ATTRIBUTE_RE.findall(tag, at))
    }


def _renamed(tag: bytes, at: int, insertion: bytes, names: Collection[bytes]) -> bytes:
    """``tag`` with ``insertion`` at ``at`` (just after the tag name) and ``data-consent-`` before the
    name of each attribute whose lower-case name is in ``names``."""
    parts = [tag[:at], insertion]
    previous = at
    for attribute in _ATTRIBUTE_RE.finditer(tag, at):
        if attribute.group(1).lower() in names:
            position = attribute.start(1)
            parts += (tag[previous:position], _RENAME_PREFIX)
            previous = position
    parts.append(tag[previous:])
    return b"".join(parts)


_SCRIPT_NAME_END: Final = 1 + len(SCRIPT)
# What gating decided for a start tag (memoized per policy by the tag's bytes).
_KEEP: Final = 0
_HOLD: Final = 1
_INERT: Final = 2


def _inert_script(tag: bytes, category: str | None) -> bytes:
    """A script start tag that does not run: ``type="text/plain"`` first, its own type kept as
    ``data-consent-type``, and ``category`` named (None: the tag names one already)."""
    insertion = (
        _INERT_TYPE if category is None else b' data-consent="%s"%s' % (category.encode(), _INERT_TYPE)
    )
    return _renamed(tag, _SCRIPT_NAME_END, insertion, (b"type",))


def _decoded(value: bytes) -> bytes:
    """An attribute value with its character references decoded (``&#47;`` is "/")."""
    if b"&" not in value:
        return value
    return html.unescape(value.decode("latin-1")).encode("utf-8", "replace")


def _is_executable(script_type: bytes | None) -> bool:
    """Whether a browser runs a script whose ``type`` attribute is ``script_type``."""
    if script_type is None:
        return True
    essence = script_type.partition(b";")[0].strip(_WHITESPACE).lower()
    return not essence or essence in JAVASCRIPT_TYPES


def _is_invisible_frame(attributes: dict[bytes, bytes]) -> bool:
    """An iframe no visitor sees (a tracking frame): a placeholder in its place would add a box."""
    for name in (b"width", b"height"):
        if attributes.get(name, b"-").strip(_WHITESPACE).lower() in (b"0", b"0px"):
            return True
    style = attributes.get(b"style", b"").lower().translate(None, _WHITESPACE)
    return b"display:none" in style or b"visibility:hidden" in style


class _Mode(enum.IntEnum):  # IntEnum: hashed in C, for the handler lookup per mode switch
    """Where the tokenizer is between two bytes of the document."""

    DATA = enum.auto()  # ordinary markup: looking for the next "<"
    TAG = enum.auto()  # in a tag not yet finished in the buffer: held back
    LONG_TAG = enum.auto()  # in a tag over MAX_TAG_BYTES: streamed out while its end is tracked
    COMMENT_START = enum.auto()  # right after "<!--", where "<!-->" and "<!--->" are whole comments
    COMMENT = enum.auto()
    BOGUS_COMMENT = enum.auto()  # "<!DOCTYPE ...>", "<!x>", "<?x>", "</ x>": up to the next ">"
    RAW_TEXT = enum.auto()  # content of an element of RAW_TEXT_ELEMENTS
    SCRIPT = enum.auto()
    SCRIPT_ESCAPED = enum.auto()  # after "<!--" in a script
    SCRIPT_DOUBLE_ESCAPED = enum.auto()  # after "<!-- <script>" in a script: "</script>" does not end it
    PLAINTEXT = enum.auto()  # after <plaintext>: the rest of the document is text
    PASS_THROUGH = enum.auto()  # nothing left to do: bytes go out as they come


#: The tokenizer mode that a start tag opens, for the few tags that open one.
_CONTENT_MODES: Final = {
    SCRIPT: _Mode.SCRIPT,
    PLAINTEXT: _Mode.PLAINTEXT,
    **dict.fromkeys(RAW_TEXT_ELEMENTS, _Mode.RAW_TEXT),
}
_INSERTION_TAGS: Final = frozenset({HEAD, BODY})
#: How much of an unbuffered (over-long) tag's name is kept: more than any name acted on, so a
#: truncated longer name never equals one.
_NAME_KEPT: Final = 32

# States of the incremental tag scanner, used when a tag is split across chunks or too long to hold.
_T_DONE: Final = -1
_T_NAME: Final = 0
_T_BEFORE_ATTR: Final = 1
_T_ATTR_NAME: Final = 2
_T_AFTER_ATTR_NAME: Final = 3
_T_BEFORE_VALUE: Final = 4
_T_UNQUOTED: Final = 5
_T_DOUBLE_QUOTED: Final = 6
_T_SINGLE_QUOTED: Final = 7


class _TagStep(NamedTuple):
    """One state of the tag scanner: skip a run of bytes, then switch on the byte that ended it."""

    run: re.Pattern[bytes]  # bytes that keep the state (may match nothing)
    on: dict[int, int]  # next state after consuming the byte that ended the run
    otherwise: int  # next state for any byte not in `on`


def _on(chars: bytes, state: int) -> dict[int, int]:
    return dict.fromkeys(chars, state)


#: The spec's tag states, folded to those that matter for finding the closing ">". Every
#: transition consumes the byte that caused it, which is harmless where the spec "reconsumes":
#: that byte is a name or value byte of the state being entered.
_TAG_STEPS: Final = (
    # _T_NAME
    _TagStep(
        re.compile(rb"[^\t\n\f\r />]*"), {**_on(_WHITESPACE + b"/", _T_BEFORE_ATTR), _GT: _T_DONE}, _T_NAME
    ),
    # _T_BEFORE_ATTR ("/" is skipped like whitespace: "/>" still ends the tag at ">")
    _TagStep(re.compile(rb"[\t\n\f\r /]*"), {_GT: _T_DONE}, _T_ATTR_NAME),
    # _T_ATTR_NAME
    _TagStep(
        re.compile(rb"[^\t\n\f\r />=]*"),
        {
            **_on(_WHITESPACE, _T_AFTER_ATTR_NAME),
            _SLASH: _T_BEFORE_ATTR,
            ord("="): _T_BEFORE_VALUE,
            _GT: _T_DONE,
        },
        _T_ATTR_NAME,
    ),
    # _T_AFTER_ATTR_NAME
    _TagStep(
        re.compile(rb"[\t\n\f\r ]*"),
        {_SLASH: _T_BEFORE_ATTR, ord("="): _T_BEFORE_VALUE, _GT: _T_DONE},
        _T_ATTR_NAME,
    ),
    # _T_BEFORE_VALUE
    _TagStep(
        re.compile(rb"[\t\n\f\r ]*"),
        {ord('"'): _T_DOUBLE_QUOTED, ord("'"): _T_SINGLE_QUOTED, _GT: _T_DONE},
        _T_UNQUOTED,
    ),
    # _T_UNQUOTED
    _TagStep(re.compile(rb"[^\t\n\f\r >]*"), {**_on(_WHITESPACE, _T_BEFORE_ATTR), _GT: _T_DONE}, _T_UNQUOTED),
    # _T_DOUBLE_QUOTED: ">" is plain text here
    _TagStep(re.compile(rb'[^"]*'), {ord('"'): _T_BEFORE_ATTR}, _T_DOUBLE_QUOTED),
    # _T_SINGLE_QUOTED
    _TagStep(re.compile(rb"[^']*"), {ord("'"): _T_BEFORE_ATTR}, _T_SINGLE_QUOTED),
)


def _match_literal(data: _Buffer, at: int, literal: bytes) -> bool | None:
    """Whether ``data[at:]`` starts with ``literal``; None if data ends too early to tell."""
    piece = data[at : at + len(literal)]
    if len(piece) == len(literal):
        return piece == literal
    return None if literal.startswith(piece) else False


def _match_tag_name(data: _Buffer, at: int, name: bytes) -> bool | None:
    """Whether ``data[at:]`` is ``name`` (ASCII case-insensitive, ``name`` lower case) followed by a
    byte that ends a tag name; None if data ends too early to tell. Lower-cases only a few bytes."""
    end = at + len(name)
    piece = data[at:end].lower()
    if len(piece) < len(name):
        return None if name.startswith(piece) else False
    if piece != name:
        return False
    if end == len(data):
        return None
    return data[end] in _TAG_NAME_END


def _partial_suffix(data: _Buffer, start: int, prefixes: tuple[bytes, ...]) -> int:
    """Length of the longest of ``prefixes`` (longest first) that ``data[start:]`` ends with."""
    for prefix in prefixes:
        if len(data) - start >= len(prefix) and data.endswith(prefix):
            return len(prefix)
    return 0


class HtmlRewriter:
    """Inserts ``head_html`` after the first ``<head>`` tag and ``body_html`` after the first
    ``<body>`` tag of one streamed HTML response, and makes inert the elements that ``gate``
    refuses. Use one instance per response::

        rewriter = HtmlRewriter(body_html=b"<div id=banner></div>", gate=policy, placeholder=render)
        for chunk in chunks:
            send(rewriter.feed(chunk))
        send(rewriter.close())

    The output is the input with the insertions added, gated elements made inert, and no other byte
    changed, whatever the chunk boundaries. Without a ``<head>``, ``head_html`` goes just before
    ``body_html``; whatever was not placed when the stream ends is appended by :meth:`close`.
    ``placeholder(category)`` gives the markup put before a gated iframe (None: nothing).
    """

    def __init__(
        self,
        *,
        head_html: bytes = b"",
        body_html: bytes = b"",
        gate: GatePolicy | None = None,
        placeholder: Callable[[str], bytes] | None = None,
    ) -> None:
        # What is still to be placed; emptied once placed, so each goes in at most once.
        self._head_html = head_html
        self._body_html = body_html
        # Gating: only a policy that refuses something needs the page scanned at all.
        self._gate = gate if gate is not None and gate.active else None
        self._placeholder = placeholder
        self._placeholders: dict[str, bytes] = {}
        self._keep_scanning = self._gate is not None
        self._skip = (_INSERTION_SKIP_RE if self._gate is None else _GATING_SKIP_RE).match
        self._mode = _Mode.DATA
        # The undecided tail of the input so far; grows in place while a split tag is being held.
        self._pending = bytearray()
        # Where scanning resumes in the next buffer (past held bytes already scanned).
        self._resume = 0
        # Per-call cursor over the buffer being scanned: bytes before `_mark` are already in `_out`,
        # bytes from `_mark` to `_pos` are decided and go out unchanged (unless a script is held).
        self._out: list[bytes | bytearray] = []
        self._mark = 0
        self._pos = 0
        # RAW_TEXT: the lower-case name whose end tag closes the element.
        self._raw_text_end = b""
        # An inline script held until its end tag decides it: buffer positions of its "<" and of
        # its body's start, or -1.
        self._held_at = -1
        self._held_body = 0
        # Incremental tag scanner (modes TAG and LONG_TAG); positions index the current buffer.
        self._tag_start = 0
        self._tag_scan = 0
        self._tag_state = _T_NAME
        self._tag_name_start = 0
        self._tag_name: bytes | None = None  # None while the name is still being read
        self._tag_name_head = b""  # LONG_TAG: the name's bytes from earlier buffers (truncated)
        self._tag_is_end = False
        self._pass_through_if_done()

    # ----------------------------------------------------------------- public interface

    def feed(self, chunk: bytes) -> bytes:
        """Take the next chunk of the page; return the bytes that can be sent now."""
        if self._mode is _Mode.PASS_THROUGH and not self._pending:
            return chunk
        data: _Buffer
        if self._pending:
            self._pending += chunk  # in place: a long split tag fed in tiny chunks stays linear
            data = self._pending
        else:
            data = chunk
        return self._process(data)

    def close(self) -> bytes:
        """End of the stream: return the held-back tail and whatever was not placed yet."""
        # A held tail is never a finished tag (an unfinished one is no tag at end of input), so it
        # goes out unchanged; but a script left open runs in a browser, so it is decided on the body
        # it has.
        rest = bytes(self._pending)
        if self._held_at >= 0:
            self._out, self._mark = [], 0
            self._decide_script(rest, len(rest))
            self._out.append(rest[self._mark :])
            rest = b"".join(self._out)
            self._out = []
        rest += self._head_html + self._body_html
        self._pending = bytearray()
        self._head_html = self._body_html = b""
        self._mode = _Mode.PASS_THROUGH
        return rest

    # ----------------------------------------------------------------- hooks

    def _on_start_tag(self, name: bytes, raw: bytes) -> bytes | None:
        """Return the bytes to emit in place of one complete start tag, or None to hold it (an
        inline script, decided by its body at its end tag).

        ``name`` is the lower-cased tag name, ``raw`` the tag's bytes from ``<`` to ``>``. Tags over
        MAX_TAG_BYTES never come here: they are streamed unchanged, and only `_take_insertions`
        runs after them.
        """
        emitted: bytes | None = raw
        if self._gate is not None:
            emitted = self._gate_start_tag(self._gate, name, raw)
        if emitted is not None and name in _INSERTION_TAGS:
            insertion = self._take_insertions(name)
            if insertion:
                return emitted + insertion
        return emitted

    def _take_insertions(self, name: bytes) -> bytes:
        """The markup due right after the start tag ``name``, marked as placed."""
        if name == HEAD:
            insertion, self._head_html = self._head_html, b""
        elif name == BODY:
            insertion = self._head_html + self._body_html
            self._head_html = self._body_html = b""
        else:
            return b""
        return insertion

    # ----------------------------------------------------------------- gating

    def _gate_start_tag(self, gate: GatePolicy, name: bytes, raw: bytes) -> bytes | None:
        """``raw`` made inert if gated, ``raw`` itself if not, None to hold an inline script."""
        memo = gate.tag_memo
        decided = memo.get(raw)
        if decided is None:
            decided = self._decide_start_tag(gate, name, raw)
            if len(raw) <= MAX_MEMO_BYTES and len(memo) < MAX_MEMO:
                memo[raw] = decided
        outcome, inert, frame_category = decided
        if outcome == _KEEP:
            return raw
        if outcome == _HOLD:
            return None
        if frame_category and self._placeholder is not None:
            # A gated iframe: its placeholder goes first (rendered per request: not in the memo).
            return self._placeholder_for(frame_category) + inert
        return inert

    def _decide_start_tag(self, gate: GatePolicy, name: bytes, raw: bytes) -> tuple[int, bytes, str]:
        """What gating makes of a start tag: (_KEEP, ...), (_HOLD, ...) for an inline script, or
        (_INERT, the inert tag, the category of the placeholder an iframe gets, or "")."""
        emitted = self._gated_tag(gate, name, raw)
        if emitted is None:
            return _HOLD, b"", ""
        if emitted is raw:
            return _KEEP, b"", ""
        if isinstance(emitted, tuple):
            category, inert = emitted
            return _INERT, inert, category
        return _INERT, emitted, ""

    def _gated_tag(self, gate: GatePolicy, name: bytes, raw: bytes) -> bytes | tuple[str, bytes] | None:
        """``raw`` made inert if gated (with the category of its placeholder, for an iframe that
        gets one), ``raw`` itself if not, None to hold an inline script."""
        if name == SCRIPT:
            return self._gate_script_tag(gate, raw)
        if name in URL_ATTRIBUTES:
            if not gate.may_gate_tag(raw.translate(None, b"\t\n\r").lower()):
                return raw
        elif MARKER not in raw.lower():
            return raw
        name_end = 1 + len(name)
        attributes = _attributes(raw, name_end)
        marker = attributes.get(MARKER)
        if marker is not None:
            category = gate.category_for_marker(marker)
            insertion = b""
        elif name not in URL_ATTRIBUTES:  # "data-consent" was part of another attribute
            return raw
        else:
            category = self._url_category(gate, name, attributes)
            insertion = b' data-consent="%s"' % category.encode() if category is not None else b""
        if category is None:
            return raw
        inert = _renamed(raw, name_end, insertion, RENAMED_ATTRIBUTES)
        if (
            name == IFRAME
            and category in gate.categories  # not for a data-consent value naming no category
            and not _is_invisible_frame(attributes)
        ):
            return category, inert
        return inert

    @staticmethod
    def _url_category(gate: GatePolicy, name: bytes, attributes: dict[bytes, bytes]) -> str | None:
        """The refused category of the first URL of an element gated for its URLs."""
        if name == LINK and LINK_RELS.isdisjoint(attributes.get(b"rel", b"").lower().split()):
            return None
        for attribute in URL_ATTRIBUTES[name]:
            value = attributes.get(attribute)
            if value is None:
                continue
            if attribute in _SRCSET_ATTRIBUTES:
                category = gate.category_for_srcset(_decoded(value))
            else:
                category = gate.category_for_url(_decoded(value))
            if category is not None:
                return category
        return None

    def _gate_script_tag(self, gate: GatePolicy, raw: bytes) -> bytes | None:
        attributes = _attributes(raw, _SCRIPT_NAME_END)
        if not _is_executable(attributes.get(b"type")):
            return raw  # JSON, templates, a script already inert, ...: data, not code
        marker = attributes.get(MARKER)
        if marker is not None:  # the operator's word decides, whatever the script loads
            return raw if gate.category_for_marker(marker) is None else _inert_script(raw, None)
        src = attributes.get(b"src")
        if src is None:
            return None  # inline: decided by its body
        category = gate.category_for_url(_decoded(src))
        return raw if category is None else _inert_script(raw, category)

    def _decide_script(self, data: _Buffer, body_end: int) -> None:
        """The held inline script's body ends at ``body_end``: emit its start tag, inert if gated."""
        start, body_start = self._held_at, self._held_body
        self._held_at = -1
        gate = self._gate
        if gate is None or body_end - body_start > MAX_INLINE_SCRIPT_BYTES:
            return
        category = gate.category_for_inline_script(bytes(data[body_start:body_end]))
        if category is not None:
            self._replace(data, start, body_start, _inert_script(bytes(data[start:body_start]), category))

    def _placeholder_for(self, category: str) -> bytes:
        markup = self._placeholders.get(category)
        if markup is None and self._placeholder is not None:
            markup = self._placeholders[category] = self._placeholder(category)
        return markup or b""

    # ----------------------------------------------------------------- driver

    def _process(self, data: _Buffer) -> bytes:
        """Scan ``data`` (the held tail plus the new chunk), return what is decided, hold the rest."""
        self._out = out = []
        self._mark = 0
        self._pos = self._resume
        end = len(data)
        while self._pos < end:
            if self._mode is _Mode.PASS_THROUGH:
                self._pos = end
            elif not self._HANDLERS[self._mode](self, data):
                break  # data[self._pos:] is undecided until more input comes
        if self._held_at >= 0 and self._pos - self._held_body > MAX_INLINE_SCRIPT_BYTES:
            self._held_at = -1  # too long to hold: the script goes out as it is, ungated
        hold = self._pos if self._held_at < 0 else self._held_at
        if hold > self._mark:
            out.append(data[self._mark : hold])
        if data is self._pending:
            del self._pending[:hold]
        elif hold < end:
            self._pending += data[hold:]
        # Positions kept for the next buffer, which starts at `hold`.
        self._resume = self._pos - hold
        self._tag_start -= hold
        self._tag_scan -= hold
        self._tag_name_start -= hold
        self._held_at -= hold if self._held_at >= 0 else 0
        self._held_body -= hold
        self._out = []
        return b"".join(out)

    def _replace(self, data: _Buffer, start: int, end: int, replacement: bytes) -> None:
        """Emit ``replacement`` instead of ``data[start:end]`` (an insertion when start == end)."""
        if start > self._mark:
            self._out.append(data[self._mark : start])
        self._out.append(replacement)
        self._mark = end

    def _pass_through_if_done(self) -> None:
        if not self._head_html and not self._body_html and not self._keep_scanning:
            self._mode = _Mode.PASS_THROUGH

    # Each handler below scans from self._pos in its mode. It returns True after advancing
    # self._pos (maybe to the end) and maybe switching mode, or False to hold data[self._pos:].

    # ----------------------------------------------------------------- markup

    def _scan_data(self, data: _Buffer) -> bool:
        # The hot path: the skip pattern runs in C up to the next "<" that needs Python.
        end = len(data)
        pos = self._pos
        skip = self._skip
        match_tag = _COMPLETE_TAG_RE.match
        while True:
            lt = skip(data, pos).end()  # type: ignore[union-attr]  # the pattern matches anywhere
            if lt >= end:
                self._pos = end
                return True
            self._pos = lt
            if lt + 1 == end:
                return False
            after = data[lt + 1]
            is_end_tag = after == _SLASH
            if is_end_tag:
                if lt + 2 == end:
                    return False
                if data[lt + 2] not in _ASCII_LETTERS:  # "</>", "</ x>": bogus comments up to ">"
                    self._pos, self._mode = lt + 2, _Mode.BOGUS_COMMENT
                    return True
            elif after not in _ASCII_LETTERS:
                opened = self._open_declaration(data, lt, after)
                if opened is None:
                    return False
                if opened:
                    return True
                pos = lt + 1  # "<" before anything else is text
                continue
            tag = match_tag(data, lt)
            if tag is None:  # not finished in this buffer: go on incrementally
                self._begin_split_tag(lt, is_end=is_end_tag)
                return True
            pos = tag.end()
            if not is_end_tag:
                self._start_tag(data, lt, pos, tag.group(1))
                if self._mode is not _Mode.DATA:
                    return True

    def _open_declaration(self, data: _Buffer, lt: int, after: int) -> bool | None:
        """At ``<!`` or ``<?``: enter the comment mode it opens and return True. False if ``lt`` is a
        text "<"; None if data ends too early to tell (``<!-``)."""
        if after == _BANG:
            is_comment = _match_literal(data, lt, _COMMENT_OPEN)
            if is_comment is None:
                return None
            if is_comment:
                self._pos, self._mode = lt + len(_COMMENT_OPEN), _Mode.COMMENT_START
            else:  # <!DOCTYPE ...>, <![CDATA[...]> and any other <!...> end at the first ">"
                self._pos, self._mode = lt + 2, _Mode.BOGUS_COMMENT
            return True
        if after == _QUESTION:
            self._pos, self._mode = lt + 2, _Mode.BOGUS_COMMENT
            return True
        return False

    def _start_tag(self, data: _Buffer, start: int, end: int, name: bytes) -> None:
        """A complete start tag ``data[start:end]``: emit what the hook makes of it, then enter the
        content it opens."""
        name = name.lower()
        if end - start > MAX_TAG_BYTES:
            # Read whole here, but in smaller chunks it would have streamed as a long tag: treated
            # alike (never gated, insertions still placed) so that chunking never changes the output.
            insertion = self._take_insertions(name)
            if insertion:
                self._replace(data, end, end, insertion)
            self._pos = end
            self._enter_content(name)
            return
        raw = bytes(data[start:end])
        replacement = self._on_start_tag(name, raw)
        if replacement is None:
            self._held_at, self._held_body = start, end
        elif replacement is not raw:
            self._replace(data, start, end, replacement)
        self._pos = end
        self._enter_content(name)

    def _enter_content(self, name: bytes) -> None:
        """Switch to the tokenizer mode that the start tag ``name`` opens."""
        mode = _CONTENT_MODES.get(name)
        if mode is not None:
            self._mode = mode
            self._raw_text_end = name
        elif name in _INSERTION_TAGS:
            self._pass_through_if_done()

    def _begin_split_tag(self, lt: int, *, is_end: bool) -> None:
        """Start the incremental tag scanner on a tag that is not finished in the buffer."""
        name_start = lt + (2 if is_end else 1)
        self._tag_start = lt
        self._tag_scan = self._tag_name_start = name_start
        self._tag_state = _T_NAME
        self._tag_name = None
        self._tag_name_head = b""
        self._tag_is_end = is_end
        self._mode = _Mode.TAG

    def _advance_tag(self, data: _Buffer) -> int:
        """Run the tag scanner from self._tag_scan; return the index past the closing ">", or -1
        if data ends first (the scanner state is kept for the next buffer)."""
        end = len(data)
        pos = self._tag_scan
        state = self._tag_state
        while pos < end:
            step = _TAG_STEPS[state]
            run = step.run.match(data, pos)
            if run is not None:  # always matches (maybe empty); the check is for the type checker
                pos = run.end()
            if pos == end:
                break
            if state == _T_NAME:
                self._tag_name = self._tag_name_head + bytes(data[self._tag_name_start : pos])
            state = step.on.get(data[pos], step.otherwise)
            pos += 1
            if state == _T_DONE:
                return pos
        self._tag_scan = pos
        self._tag_state = state
        return -1

    def _scan_tag(self, data: _Buffer) -> bool:
        start = self._tag_start
        tag_end = self._advance_tag(data)
        if tag_end >= 0:
            self._pos, self._mode = tag_end, _Mode.DATA
            if not self._tag_is_end:
                self._start_tag(data, start, tag_end, self._tag_name or b"")
            return True
        if len(data) - start > MAX_TAG_BYTES:
            # Too long to hold: let it through unchanged and only track where it ends.
            self._keep_name_head(data)
            self._pos = len(data)
            self._mode = _Mode.LONG_TAG
            return True
        self._pos = start  # hold the tag from its "<"; _process rebases the scanner positions
        return False

    def _keep_name_head(self, data: _Buffer) -> None:
        """Before data is let go mid-name, keep the name's start: enough to tell it apart from the
        short names acted on, which is all an unbuffered tag's name is used for."""
        if self._tag_name is None:
            head = self._tag_name_head + bytes(data[self._tag_name_start : self._tag_name_start + _NAME_KEPT])
            self._tag_name_head = head[:_NAME_KEPT]

    def _scan_long_tag(self, data: _Buffer) -> bool:
        self._tag_scan = self._tag_name_start = self._pos
        tag_end = self._advance_tag(data)
        if tag_end < 0:
            self._keep_name_head(data)
            self._pos = len(data)
            return True
        self._pos = tag_end
        self._mode = _Mode.DATA
        if not self._tag_is_end:
            name = (self._tag_name or b"").lower()
            insertion = self._take_insertions(name)
            if insertion:
                self._replace(data, tag_end, tag_end, insertion)
            self._enter_content(name)
        return True

    def _scan_bogus_comment(self, data: _Buffer) -> bool:
        gt = data.find(b">", self._pos)
        if gt < 0:
            self._pos = len(data)
        else:
            self._pos, self._mode = gt + 1, _Mode.DATA
        return True

    def _scan_comment_start(self, data: _Buffer) -> bool:
        pos = self._pos
        first = data[pos]
        if first == _GT:  # "<!-->"
            self._pos, self._mode = pos + 1, _Mode.DATA
        elif first == _DASH:
            if pos + 1 == len(data):
                return False
            if data[pos + 1] == _GT:  # "<!--->"
                self._pos, self._mode = pos + 2, _Mode.DATA
            else:
                self._mode = _Mode.COMMENT
        else:
            self._mode = _Mode.COMMENT
        return True

    def _scan_comment(self, data: _Buffer) -> bool:
        found = _COMMENT_END_RE.search(data, self._pos)
        if found is not None:
            self._pos, self._mode = found.end(), _Mode.DATA
            return True
        # Stream the comment out, holding only bytes that may begin its end.
        self._pos = len(data) - _partial_suffix(data, self._pos, _COMMENT_END_PREFIXES)
        return False

    # ----------------------------------------------------------------- element content

    def _scan_plaintext(self, data: _Buffer) -> bool:
        self._pos = len(data)
        return True

    def _scan_raw_text(self, data: _Buffer) -> bool:
        name = self._raw_text_end
        pos = self._pos
        while True:
            lt = data.find(b"</", pos)
            if lt < 0:
                self._pos = len(data) - 1 if data.endswith(b"<") else len(data)
                return False
            ends = _match_tag_name(data, lt + 2, name)
            if ends is None:
                self._pos = lt
                return False
            if ends:  # the end tag itself is read in DATA mode (its attributes may hold quotes)
                self._pos, self._mode = lt, _Mode.DATA
                return True
            pos = lt + 2

    def _end_script(self, data: _Buffer, lt: int) -> None:
        """The script's end tag starts at ``lt``: decide a held script, read the tag in DATA mode."""
        self._pos, self._mode = lt, _Mode.DATA
        if self._held_at >= 0:
            self._decide_script(data, lt)

    def _scan_script(self, data: _Buffer) -> bool:
        end = len(data)
        pos = self._pos
        search = _SCRIPT_MARKUP_RE.search
        while True:
            found = search(data, pos)
            if found is None:
                if data.endswith(b"<") and end - 1 >= pos:  # maybe "</" or "<!"
                    self._pos = end - 1
                    return False
                self._pos = end
                return True
            lt = found.start()
            self._pos = lt
            if data[lt + 1] == _SLASH:
                ends = _match_tag_name(data, lt + 2, SCRIPT)
                if ends is None:
                    return False
                if ends:
                    self._end_script(data, lt)
                    return True
            else:
                escapes = _match_literal(data, lt, _COMMENT_OPEN)
                if escapes is None:
                    return False
                if escapes:
                    # Resume on the "--" of "<!--": "<!-->" and "<!--->" end the escape at once.
                    self._pos, self._mode = lt + 2, _Mode.SCRIPT_ESCAPED
                    return True
            pos = lt + 1

    def _scan_script_escaped(self, data: _Buffer) -> bool:
        return self._scan_script_escape(data, double=False)

    def _scan_script_double_escaped(self, data: _Buffer) -> bool:
        return self._scan_script_escape(data, double=True)

    def _scan_script_escape(self, data: _Buffer, *, double: bool) -> bool:
        """Script content after ``<!--``. Single escape: ``</script>`` ends the script, ``<script>``
        double-escapes. Double escape: ``</script>`` only returns to the single escape. ``-->``
        ends either (browsers' legacy handling of ``<!-- document.write("<script>...") -->``)."""
        pos = self._pos
        while True:
            found = _SCRIPT_ESCAPE_RE.search(data, pos)
            if found is None:
                self._pos = len(data) - _partial_suffix(data, pos, _SCRIPT_ESCAPE_END_PREFIXES)
                return False
            at = found.start()
            if data[at] == _DASH:  # "-->"
                self._pos, self._mode = found.end(), _Mode.SCRIPT
                return True
            self._pos = at
            closes = data[at + 1 : at + 2] == b"/"
            name_at = at + 2 if closes else at + 1
            is_script = _match_tag_name(data, name_at, SCRIPT)
            if is_script is None:
                return False
            if is_script and closes and not double:  # the script's end tag, read in DATA mode
                self._end_script(data, at)
                return True
            if is_script and closes == double:  # "<script" enters, "</script" leaves double escape
                # Skip the name and the byte after it, as the spec consumes that delimiter.
                self._pos = name_at + len(SCRIPT) + 1
                self._mode = _Mode.SCRIPT_ESCAPED if double else _Mode.SCRIPT_DOUBLE_ESCAPED
                return True
            pos = at + 1

    # Plain functions, not bound methods, so that an instance holds no reference cycle.
    _HANDLERS: ClassVar[dict[_Mode, Callable[[HtmlRewriter, _Buffer], bool]]] = {
        _Mode.DATA: _scan_data,
        _Mode.TAG: _scan_tag,
        _Mode.LONG_TAG: _scan_long_tag,
        _Mode.COMMENT_START: _scan_comment_start,
        _Mode.COMMENT: _scan_comment,
        _Mode.BOGUS_COMMENT: _scan_bogus_comment,
        _Mode.RAW_TEXT: _scan_raw_text,
        _Mode.SCRIPT: _scan_script,
        _Mode.SCRIPT_ESCAPED: _scan_script_escaped,
        _Mode.SCRIPT_DOUBLE_ESCAPED: _scan_script_double_escaped,
        _Mode.PLAINTEXT: _scan_plaintext,
    }


#: A whole page rewritten once with these in place of the insertions and placeholders gives a
#: template that any request's markup fills (a NUL never occurs in a page that is templated).
_HEAD_SLOT: Final = b"\x00H\x00"
_BODY_SLOT: Final = b"\x00B\x00"
_SLOT_RE: Final = re.compile(rb"\x00([HB]|P[^\x00]*+)\x00")


def _placeholder_slot(category: str) -> bytes:
    return b"\x00P%s\x00" % category.encode()


class PageCache:
    """Whole pages rewritten once per content and visitor decision, then only filled per request.

    Many sites send the same bytes to every visitor (a static or cached page); the rewriter reads
    such a page once per set of granted categories, and later requests only splice their own
    markup into the kept template. A page is found by a fingerprint (its length and the 64 bytes in
    its middle, where a site's pages differ most (their starts and ends are the site's template):
    hashing a whole page would cost more than the rest of the request) and then compared whole (a
    memcmp), so only the very same bytes hit. A page is kept from the second sighting of its
    fingerprint on (a page that differs per request hardly pushes others out), and the cache holds
    at most ``max_bytes`` of pages and templates, least recently used out first. Pages over
    ``max_page`` or holding a NUL byte are rewritten every time.
    """

    def __init__(self, *, max_bytes: int = 8 * 1024 * 1024, max_page: int = 512 * 1024) -> None:
        self._max_bytes = max_bytes
        self._max_page = max_page
        # (fingerprint, key) -> (the page, its template, whether the template is the usual one: a head
        # slot and a body slot)
        self._templates: OrderedDict[tuple[_Fingerprint, Hashable], tuple[bytes, tuple[bytes, ...], bool]] = (
            OrderedDict()
        )
        self._size = 0
        # Fingerprints seen once (bounded): the second sighting admits a page.
        self._seen: OrderedDict[_Fingerprint, None] = OrderedDict()

    def rewrite(
        self,
        page: bytes,
        *,
        key: Hashable,
        gate: GatePolicy | None,
        head_html: bytes,
        body_html: bytes,
        placeholder: Callable[[str], bytes] | None,
    ) -> bytes:
        """``page`` (a whole response body) as HtmlRewriter would give it; ``key`` names ``gate``."""
        middle = len(page) // 2  # the fingerprint, inline (it runs on every page)
        cache_key = ((len(page), page[middle : middle + _SAMPLE]), key)
        entry = self._templates.get(cache_key)
        if entry is not None and entry[0] == page:
            self._templates.move_to_end(cache_key)
            parts = entry[1]
            if entry[2]:
                return b"".join((parts[0], head_html, parts[2], body_html, parts[4]))
            return _fill(parts, head_html, body_html, placeholder)
        if len(page) > self._max_page or b"\x00" in page:
            rewriter = HtmlRewriter(
                head_html=head_html, body_html=body_html, gate=gate, placeholder=placeholder
            )
            return rewriter.feed(page) + rewriter.close()
        rewriter = HtmlRewriter(
            head_html=_HEAD_SLOT, body_html=_BODY_SLOT, gate=gate, placeholder=_placeholder_slot
        )
        parts = tuple(_SLOT_RE.split(rewriter.feed(page) + rewriter.close()))
        self._admit(cache_key, page, parts)
        return _fill(parts, head_html, body_html, placeholder)

    def _admit(self, cache_key: tuple[_Fingerprint, Hashable], page: bytes, parts: tuple[bytes, ...]) -> None:
        fingerprint = cache_key[0]
        if fingerprint not in self._seen:
            self._seen[fingerprint] = None
            if len(self._seen) > _SEEN_PAGES:
                self._seen.popitem(last=False)
            return
        size = _entry_size(page, parts)
        if size > self._max_bytes:
            return
        replaced = self._templates.pop(cache_key, None)
        if replaced is not None:  # the same fingerprint, other bytes: the newer page stays
            self._size -= _entry_size(*replaced[:2])
        self._templates[cache_key] = (page, parts, _usual(parts))
        self._size += size
        while self._size > self._max_bytes and self._templates:
            _, oldest = self._templates.popitem(last=False)
            self._size -= _entry_size(*oldest[:2])


#: Pages remembered by fingerprint for admission to a PageCache.
_SEEN_PAGES: Final = 4096
#: Bytes sampled in the middle of a page for its fingerprint.
_SAMPLE: Final = 64
_Fingerprint: TypeAlias = tuple[int, bytes]


def _entry_size(page: bytes, parts: tuple[bytes, ...]) -> int:
    """What a kept page counts against the cache's budget: the page and its template."""
    return len(page) + sum(map(len, parts))


def _usual(parts: tuple[bytes, ...]) -> bool:
    """Whether a template is that of most pages: one head slot, one body slot."""
    return len(parts) == 5 and parts[1] == b"H" and parts[3] == b"B"


def _fill(
    parts: tuple[bytes, ...], head_html: bytes, body_html: bytes, placeholder: Callable[[str], bytes] | None
) -> bytes:
    if _usual(parts):
        return b"".join((parts[0], head_html, parts[2], body_html, parts[4]))
    if len(parts) == 1:
        return parts[0]
    filled = list(parts)
    for index in range(1, len(parts), 2):
        slot = parts[index]
        if slot == b"H":
            filled[index] = head_html
        elif slot == b"B":
            filled[index] = body_html
        else:
            filled[index] = placeholder(slot[1:].decode()) if placeholder is not None else b""
    return b"".join(filled)
