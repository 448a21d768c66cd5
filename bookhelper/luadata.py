"""A reader of Lua data files (KOReader's sidecars), parsed as data, never run.

A sidecar is Lua source that KOReader's dump.lua wrote. The parser reads exactly the data subset (tables,
strings with LuaJIT's escapes, numbers, booleans) as LuaJIT would load it, and refuses anything else: code
(names, calls, operators) and broken text. inf and nan load as nil (the entry is absent), -inf fails the
whole file, as in LuaJIT."""

import math
import re
from typing import Optional, Union

SIDECAR_MAX_BYTES = 32 * 1024 * 1024  # real sidecars are under 2 MB, even with thousands of highlights
SIDECAR_MAX_DEPTH = 100  # KOReader nests 6 levels; each level costs two Python frames, so keep it far below 300
_SPACE = re.compile(rb"[ \t\r\n\v\f]*")
_LONG_BRACKET = re.compile(rb"\[(=*)\[")
_REST_OF_LINE = re.compile(rb"[^\r\n]*")
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?([0-9]+))?")
_NUMBER_TAIL = re.compile(rb"[A-Za-z0-9_.]")  # Lua's lexer swallows these into the number, then fails
_PLAIN = {b'"': re.compile(rb'[^"\\\r\n]*'), b"'": re.compile(rb"[^'\\\r\n]*")}


_ESCAPE = re.compile(rb"\\(?:([0-9]{1,3})|x([0-9A-Fa-f]{2})|u\{([0-9A-Fa-f]+)\}|(z)[ \t\r\n\v\f]*"
                     rb"|(\r\n|\n\r|[\r\n])|([abfnrtv\\\"']))")


_SIMPLE_ESCAPES = dict(zip(b"abfnrtv\\\"'", b"\a\b\f\n\r\t\v\\\"'"))


_KEYWORDS = {b"and", b"break", b"do", b"else", b"elseif", b"end", b"false", b"for", b"function", b"if", b"in",
             b"local", b"nil", b"not", b"or", b"repeat", b"return", b"then", b"true", b"until", b"while"}


_ABSENT = object()  # what `inf` and `nan` load as: nil
LuaData = Union[dict, str, int, float, bool, None]


class LuaDataError(ValueError):
    """The text is not Lua data as KOReader writes it. ``line`` and ``column`` (in bytes) count from 1."""

    def __init__(self, message: str, line: Optional[int] = None, column: Optional[int] = None):
        super().__init__(message if line is None else f"{message} at line {line}, column {column}")
        self.line, self.column = line, column


def parse_lua_data(text: Union[str, bytes], max_bytes: int = SIDECAR_MAX_BYTES,
                   max_depth: int = SIDECAR_MAX_DEPTH) -> LuaData:
    """The value a sidecar returns, read without running it. Pass the file's bytes; str is UTF-8 encoded."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(data) > max_bytes:
        raise LuaDataError(f"larger than {max_bytes} bytes")
    return _Parser(data, max_depth).chunk()


def lua_list(table: LuaData) -> list:
    """The values of a Lua list (a table keyed 1..n) in order. Raises LuaDataError for anything else."""
    if isinstance(table, dict) and all(i in table for i in range(1, len(table) + 1)):
        return [table[i] for i in range(1, len(table) + 1)]
    raise LuaDataError("not a list (a table keyed 1..n)")


class _Parser:
    def __init__(self, data: bytes, max_depth: int):
        self.data, self.max_depth = data, max_depth
        self.pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # LuaJIT skips a BOM

    def error(self, message: str, pos: Optional[int] = None):
        pos = self.pos if pos is None else pos
        line_start = self.data.rfind(b"\n", 0, pos) + 1
        return LuaDataError(message, self.data.count(b"\n", 0, pos) + 1, pos - line_start + 1)

    def found(self) -> str:
        return repr(self.data[self.pos : self.pos + 12].decode("utf-8", "replace")) if self.pos < len(self.data) \
            else "the end"

    def skip(self) -> bytes:
        """Skip white space and comments; return the next byte (b"" at the end)."""
        data = self.data
        while True:
            self.pos = _SPACE.match(data, self.pos).end()
            if not data.startswith(b"--", self.pos):
                return data[self.pos : self.pos + 1]
            long = _LONG_BRACKET.match(data, self.pos + 2)
            if long:  # a --[==[ block ]==] comment; searching once keeps this linear
                end = data.find(b"]" + long.group(1) + b"]", long.end())
                if end < 0:
                    raise self.error("unfinished long comment")
                self.pos = end + len(long.group(1)) + 2
            else:
                self.pos = _REST_OF_LINE.match(data, self.pos).end()

    def chunk(self) -> LuaData:
        name = _NAME.match(self.data, self.pos) if self.skip() else None
        if not name or name.group() != b"return":
            raise self.error(f"expected 'return', found {self.found()}")
        self.pos = name.end()
        value = self.value(0)
        if self.skip() == b";":
            self.pos += 1
        if self.skip():
            raise self.error(f"expected the end after the returned value, found {self.found()}")
        return None if value is _ABSENT else value

    def value(self, depth: int):
        char = self.skip()
        if char == b"{":
            return self.table(depth + 1)
        if char in _PLAIN:
            return self.string(char)
        if _LONG_BRACKET.match(self.data, self.pos):
            raise self.error("long strings are not data KOReader writes")
        number = _NUMBER.match(self.data, self.pos)
        if number:
            return self.number(number)
        name = _NAME.match(self.data, self.pos)
        if not name:  # -inf and -nan too: in Lua, arithmetic on a nil global fails the whole file
            raise self.error(f"expected a value, found {self.found()}")
        word = name.group()
        if word in (b"inf", b"nan", b"true", b"false"):
            self.pos = name.end()
            return _ABSENT if word in (b"inf", b"nan") else word == b"true"
        raise self.error(f"the name {word.decode()!r} is Lua code, not data")

    def number(self, match) -> Union[int, float]:
        if _NUMBER_TAIL.match(self.data, match.end()):
            raise self.error("malformed number (hex, suffixes and names are not data)")
        exponent = (match.group(1) or b"").lstrip(b"0")
        if len(exponent) > 7 or int(exponent or b"0") >= 1 << 20:  # LuaJIT's limit (STRSCAN_MAXEXP)
            raise self.error("malformed number (exponent too large)")
        self.pos = match.end()
        value = float(match.group())
        # Lua numbers are doubles; integral ones read better as int, but int cannot hold -0.0.
        return int(value) if value.is_integer() and (value or math.copysign(1.0, value) > 0) else value

    def string(self, quote: bytes) -> str:
        start, parts, plain = self.pos, [], _PLAIN[quote]
        self.pos += 1
        while True:
            run = plain.match(self.data, self.pos)
            parts.append(run.group())
            self.pos = run.end()
            char = self.data[self.pos : self.pos + 1]
            if char == quote:
                self.pos += 1
                return b"".join(parts).decode("utf-8", errors="replace")
            if char != b"\\":
                raise self.error("unfinished string (a line break needs a backslash)" if char else
                                 "unfinished string", self.pos if char else start)
            parts.append(self.escape())

    def escape(self) -> bytes:
        match = _ESCAPE.match(self.data, self.pos)
        if not match:
            raise self.error("invalid escape sequence")
        self.pos = match.end()
        decimal, hexadecimal, code_point, skip_space, newline, simple = match.groups()
        if decimal:
            if int(decimal) > 255:
                raise self.error("escape sequence too large", match.start())
            return bytes([int(decimal)])
        if hexadecimal:
            return bytes([int(hexadecimal, 16)])
        if code_point:
            code = int(code_point, 16)
            if code >= 0x110000 or 0xD800 <= code < 0xE000:  # as LuaJIT: no surrogates, nothing past Unicode
                raise self.error("invalid \\u escape", match.start())
            return chr(code).encode()
        return b"" if skip_space else b"\n" if newline else bytes([_SIMPLE_ESCAPES[simple[0]]])

    def table(self, depth: int) -> dict:
        if depth > self.max_depth:
            raise self.error(f"tables nested deeper than {self.max_depth}")
        self.pos += 1
        table, assigned, position = {}, set(), 0
        while (char := self.skip()) != b"}":
            if not char:
                raise self.error("unfinished table (the text ends inside it)")
            start = self.pos
            name = _NAME.match(self.data, self.pos)
            if char == b"[" and not _LONG_BRACKET.match(self.data, self.pos):
                self.pos += 1
                key = self.value(depth)
                if key is _ABSENT or isinstance(key, (bool, dict)):
                    raise self.error("a table key must be a string or a number", start)
                self.expect(b"]")
                self.expect(b"=")
            elif name and name.group() not in _KEYWORDS and self.skip_to(name.end()) == b"=" \
                    and not self.data.startswith(b"==", self.pos):
                key = name.group().decode()
                self.pos += 1
            else:
                self.pos = start
                position += 1
                key = position
            if key in assigned:
                raise self.error(f"the key {key!r} is set twice", start)
            assigned.add(key)
            value = self.value(depth)
            if value is not _ABSENT:
                table[key] = value
            if self.skip() in (b",", b";"):
                self.pos += 1
            elif self.skip() != b"}":
                raise self.error(f"expected ',' or '}}' after a table entry, found {self.found()}")
        self.pos += 1
        return table

    def skip_to(self, pos: int) -> bytes:
        self.pos = pos
        return self.skip()

    def expect(self, char: bytes):
        if self.skip() != char:
            raise self.error(f"expected {char.decode()!r}, found {self.found()}")
        self.pos += 1
