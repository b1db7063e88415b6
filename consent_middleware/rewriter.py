"""Streaming HTML rewriter: injects markup into an HTML response while it streams.

The rewriter reads raw bytes and never decodes the page, so it works for any ASCII-compatible
charset: everything it looks for (``<``, ``>``, quotes, tag names) is ASCII, and every byte it does
not insert is passed on unchanged. It is a small tokenizer following the states of the WHATWG HTML
tokenizer that matter for finding real start tags: tags with quoted attribute values, comments
(with their ``<!-->`` quirks), bogus comments (``<!DOCTYPE>``, ``<?xml?>``, ``</ x>``), the raw
text of ``script``/``style``/``textarea``/... and ``<plaintext>``.

Streaming: ``feed`` returns everything it can decide and holds back only an undecided tail (an
unfinished tag of at most :data:`MAX_TAG_BYTES`, or the few bytes that may begin ``<!--``, ``-->``
or a raw-text end tag). Text is skipped with ``bytes.find`` and compiled patterns, never byte by
byte in Python. Once every insertion is placed the rewriter becomes a pass-through, unless a
subclass or later feature asks to keep scanning (see ``_keep_scanning``).
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Callable
from typing import ClassVar, Final, NamedTuple, TypeAlias

#: A tag longer than this is not buffered: it is passed on unchanged as it streams (its quotes are
#: still tracked so scanning resumes after its real end). Bounds what ``feed`` may hold back.
MAX_TAG_BYTES: Final = 64 * 1024

HEAD: Final = b"head"
BODY: Final = b"body"
SCRIPT: Final = b"script"
PLAINTEXT: Final = b"plaintext"

#: Elements whose content is text up to their own end tag (RAWTEXT and RCDATA in the HTML spec).
#: ``script`` has extra escape rules and ``noscript`` is deliberately absent: tags inside it are
#: real for a browser without scripts, and the gating feature rewrites them.
RAW_TEXT_ELEMENTS: Final = frozenset(
    {b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes"}
)

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
    ``<body>`` tag of one streamed HTML response. Use one instance per response::

        rewriter = HtmlRewriter(body_html=b"<div id=banner></div>")
        for chunk in chunks:
            send(rewriter.feed(chunk))
        send(rewriter.close())

    The output is the input with the insertions added and no other byte changed, whatever the chunk
    boundaries. Without a ``<head>``, ``head_html`` goes just before ``body_html``; whatever was not
    placed when the stream ends is appended by :meth:`close`.
    """

    def __init__(self, *, head_html: bytes = b"", body_html: bytes = b"") -> None:
        # What is still to be placed; emptied once placed, so each goes in at most once.
        self._head_html = head_html
        self._body_html = body_html
        # The gating feature sets this to keep tokenizing (and rewriting tags) after the insertions.
        self._keep_scanning = False
        self._mode = _Mode.DATA
        # The undecided tail of the input so far; grows in place while a split tag is being held.
        self._pending = bytearray()
        # Per-call cursor over the buffer being scanned: bytes before `_mark` are already in `_out`,
        # bytes from `_mark` to `_pos` are decided and go out unchanged.
        self._out: list[bytes | bytearray] = []
        self._mark = 0
        self._pos = 0
        # RAW_TEXT: the lower-case name whose end tag closes the element.
        self._raw_text_end = b""
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
        # goes out unchanged.
        rest = bytes(self._pending) + self._head_html + self._body_html
        self._pending = bytearray()
        self._head_html = self._body_html = b""
        self._mode = _Mode.PASS_THROUGH
        return rest

    # ----------------------------------------------------------------- hooks

    def _on_start_tag(self, name: bytes, raw: bytes) -> bytes:
        """Return the bytes to emit in place of one complete start tag.

        ``name`` is the lower-cased tag name, ``raw`` the tag's bytes from ``<`` to ``>``. The
        gating feature rewrites ``raw`` here. Tags over MAX_TAG_BYTES never come here: they are
        streamed unchanged, and only `_take_insertions` runs after them.
        """
        if name in _INSERTION_TAGS:
            insertion = self._take_insertions(name)
            if insertion:
                return raw + insertion
        return raw

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

    # ----------------------------------------------------------------- driver

    def _process(self, data: _Buffer) -> bytes:
        """Scan ``data`` (the held tail plus the new chunk), return what is decided, hold the rest."""
        self._out = out = []
        self._mark = self._pos = 0
        end = len(data)
        while self._pos < end:
            if self._mode is _Mode.PASS_THROUGH:
                self._pos = end
            elif not self._HANDLERS[self._mode](self, data):
                break  # data[self._pos:] is undecided until more input comes
        hold = self._pos
        if hold > self._mark:
            out.append(data[self._mark : hold])
        if data is self._pending:
            del self._pending[:hold]
        elif hold < end:
            self._pending += data[hold:]
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
        # The hot path: one find() per "<" and one regex match per complete tag; end tags are
        # skipped without a method call.
        end = len(data)
        pos = self._pos
        find = data.find
        match_tag = _COMPLETE_TAG_RE.match
        while True:
            lt = find(b"<", pos)
            if lt < 0:
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
        raw = bytes(data[start:end])  # no copy when data is bytes
        replacement = self._on_start_tag(name, raw)
        if replacement is not raw:
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
        # Hold the tag from its "<"; the next buffer starts there, so rebase the positions.
        self._pos = start
        self._tag_scan -= start
        self._tag_name_start -= start
        self._tag_start = 0
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

    def _scan_script(self, data: _Buffer) -> bool:
        end = len(data)
        pos = self._pos
        while True:
            lt = data.find(b"<", pos)
            if lt < 0:
                self._pos = end
                return True
            self._pos = lt
            if lt + 1 == end:
                return False
            after = data[lt + 1]
            if after == _SLASH:
                ends = _match_tag_name(data, lt + 2, SCRIPT)
                if ends is None:
                    return False
                if ends:
                    self._mode = _Mode.DATA
                    return True
            elif after == _BANG:
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
                self._mode = _Mode.DATA
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
