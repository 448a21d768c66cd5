"""The sidecar parser reads what KOReader writes, as LuaJIT would, and refuses the rest.

Oracles: the sidecar generator's expected values (samples/sidecars.py) and a real LuaJIT
(lupa's), which loads the same text in an empty environment.
"""

import math
import random
import re
import time

import lupa.luajit21
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bookhelper.luadata import LuaDataError, lua_list, parse_lua_data
from samples.sidecars import NotLoadable, loaded_value, sidecar_text, write_sidecars
from samples.statistics import make_books

LUA = lupa.luajit21.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
# Load as data: no globals at all, so `inf` and `nan` are nil as in KOReader, and no code can reach anything.
_lua_load = LUA.eval("""function(text)
    local chunk, err = load(text, "=sidecar", "t", {})
    if not chunk then return false, err end
    return pcall(chunk)
end""")


def luajit_value(text: bytes):
    """(True, value as the parser presents it) when LuaJIT loads ``text``, else (False, its error)."""
    ok, value = _lua_load(text)

    def python(value):
        if lupa.luajit21.lua_type(value) == "table":
            return {python(key): python(item) for key, item in value.items()}
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value

    return ok, python(value) if ok else value


def parsed(text: bytes):
    """(True, value) when the parser reads ``text``, else (False, its LuaDataError); anything else propagates."""
    try:
        return True, parse_lua_data(text)
    except LuaDataError as error:
        return False, error


# --- every generated file --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("hostile", [True, False])
def test_every_generated_file_parses_to_its_expected_value_or_is_refused(tmp_path, seed, hostile):
    files = write_sidecars(tmp_path, make_books(9, random.Random(seed)), seed=seed, hostile=hostile, broken=True)
    for file in files:
        text = file.path.read_bytes()
        if file.expected is None:
            with pytest.raises(LuaDataError):
                parse_lua_data(text)
        else:
            assert parse_lua_data(text) == file.expected, file.path
    assert sum(f.expected is None for f in files) >= 7


def test_annotations_and_legacy_bookmarks_come_out_as_lists(tmp_path):
    files = write_sidecars(tmp_path, make_books(9, random.Random(1)), hostile=False, broken=False)
    current = next(f for f in files if f.era == "current" and f.kind == "sidecar")
    legacy = next(f for f in files if f.era == "v2021" and f.expected)
    annotations = lua_list(parse_lua_data(current.path.read_bytes())["annotations"])
    assert [a.get("pageno") for a in annotations] == sorted(a.get("pageno") for a in annotations)
    assert any("drawer" not in a for a in annotations)  # the page bookmark
    legacy_data = parse_lua_data(legacy.path.read_bytes())
    assert lua_list(legacy_data["bookmarks"]) == [legacy.expected["bookmarks"][i + 1]
                                                  for i in range(len(legacy.expected["bookmarks"]))]
    assert all(isinstance(page, int) for page in legacy_data["highlight"])


# --- round trip through KOReader's dump ------------------------------------------------------

# Number keys that %.14g writes exactly, so two keys never become one in the file (KOReader's never do).
lua_keys = st.one_of(st.text(max_size=12), st.integers(-(10**14) + 1, 10**14 - 1), st.floats(
    allow_nan=False, allow_infinity=False).map(lambda x: float(b"%.14g" % x)).filter(lambda x: not x.is_integer()))
lua_scalars = st.one_of(
    st.text(), st.binary(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(),
    st.sampled_from([-0.0, math.inf, -math.inf, math.nan, 5e-324, 1e15, 1 / 3]),
)
lua_tables = st.recursive(
    st.dictionaries(lua_keys, lua_scalars, max_size=6),
    lambda children: st.dictionaries(lua_keys, st.one_of(lua_scalars, children), max_size=6),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lua_tables, st.booleans(), st.integers(0, 3), st.sampled_from(["/x.sdr/metadata.epub.lua", "we can read"]))
def test_any_value_dumped_as_koreader_does_parses_back_to_what_lua_loads(table, trailing_comma, order, header):
    text = sidecar_text(table, header, random.Random(order) if order else None, trailing_comma)
    try:
        expected = loaded_value(table)
    except NotLoadable:
        with pytest.raises(LuaDataError, match="-inf"):
            parse_lua_data(text)
        return
    assert parse_lua_data(text) == expected


# --- refusals --------------------------------------------------------------------------------

REFUSED = {
    "function call": (b'return {\n    ["a"] = tonumber("1"),\n}', 2, 13),
    "os.execute": (b'return {\n    ["a"] = os.execute("rm -rf ~"),\n}', 2, 13),
    "concatenation": (b'return {\n    ["a"] = "x" .. "y",\n}', 2, 17),
    "bare name": (b"return {\n    [1] = title,\n}", 2, 11),
    "bare name in a list": (b"return {title, 1}", 1, 9),
    "nil": (b"return {[1] = nil}", 1, 15),
    "arithmetic": (b"return {[1] = 1 + 2}", 1, 17),
    "parenthesis": (b"return ({})", 1, 8),
    "unterminated string": (b'return {[1] = "abc', 1, 15),
    "raw newline in a string": (b'return {[1] = "ab\ncd"}', 1, 18),
    "raw CR in a string": (b'return {[1] = "ab\rcd"}', 1, 18),
    "truncated file": (b'-- x\nreturn {\n    ["a"] = {\n        [1] = 5,\n', 5, 1),
    "no return": (b"-- only a comment\n", 2, 1),
    "empty file": (b"", 1, 1),
    "a second value": (b"return {}, {}", 1, 10),
    "code after the value": (b"return {}\nos.exit()", 2, 1),
    "long string key": (b"return {[ [[x]] ] = 1}", 1, 11),
    "long string in a list": (b"return {[==[x]==]}", 1, 9),
    "long string value": (b"return {[1] = [[x]]}", 1, 15),
    "hexadecimal": (b"return {[1] = 0x10}", 1, 15),
    "LuaJIT int64 suffix": (b"return {[1] = 1LL}", 1, 15),
    "malformed number": (b"return {[1] = 1..2}", 1, 15),
    "exponent past LuaJIT's limit": (b"return {[1] = 1e1048576}", 1, 15),
    "space after minus": (b"return {[1] = - 5}", 1, 15),
    "-inf": (b"return {\n    [\"x\"] = -inf,\n}", 2, 13),
    "-nan": (b"return {[1] = -nan}", 1, 15),
    "minus before a boolean": (b"return {[1] = -true}", 1, 15),
    "inf as key": (b"return {[inf] = 1}", 1, 9),
    "boolean key": (b"return {[true] = 1}", 1, 9),
    "table key": (b"return {[{}] = 1}", 1, 9),
    "duplicate key": (b'return {["a"] = 1, ["a"] = 2}', 1, 20),
    "positional over explicit key": (b'return {[1] = "a", "b"}', 1, 20),
    "keyword as name": (b"return {end = 1}", 1, 9),
    "invalid escape": (b'return {[1] = "\\q"}', 1, 16),
    "decimal escape over 255": (b'return {[1] = "\\256"}', 1, 16),
    "surrogate \\u escape": (b'return {[1] = "\\u{D800}"}', 1, 16),
    "short \\x escape": (b'return {[1] = "\\x4"}', 1, 16),
    "unfinished long comment": (b"return {} --[==[ x ]=]", 1, 11),
    "missing separator": (b"return {[1] = 1 [2] = 2}", 1, 17),
    "empty entry": (b"return {,}", 1, 9),
    "shebang line": (b"#!/usr/bin/lua\nreturn {}", 1, 1),
    "non-ASCII name": ("return {é = 1}".encode(), 1, 9),
    # Both keys decode to U+FFFD: one dict cannot hold both, so the file is refused rather than half read.
    "keys differing only in invalid UTF-8": (b'return {["\xff"] = 1, ["\xfe"] = 2}', 1, 20),
}


@pytest.mark.parametrize("name", REFUSED)
def test_code_and_broken_text_are_refused_with_their_position(name):
    text, line, column = REFUSED[name]
    with pytest.raises(LuaDataError) as error:
        parse_lua_data(text)
    assert (error.value.line, error.value.column) == (line, column), str(error.value)
    assert f"line {line}, column {column}" in str(error.value)


def test_nesting_past_the_limit_is_refused_without_recursion_error():
    assert parse_lua_data(b"return " + b"{" * 100 + b"}" * 100) is not None
    for depth in (101, 100_000):
        with pytest.raises(LuaDataError, match="nested deeper than 100"):
            parse_lua_data(b"return " + b"{" * depth + b"}" * depth)
    with pytest.raises(LuaDataError, match="nested deeper than 3"):
        parse_lua_data(b"return {{{{}}}}", max_depth=3)
    with pytest.raises(LuaDataError, match="nested deeper"):
        parse_lua_data(b"return " + b"{[" * 100_000)


def test_text_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(LuaDataError, match="larger than 10 bytes"):
        parse_lua_data(b"return {  }", max_bytes=10)
    assert parse_lua_data(b"return {}", max_bytes=9) == {}


# --- what is accepted ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    (b'return "\\0001\\0091\\13\\\n\\127\\\\\\""', "\x001\t1\r\n\x7f\\\""),
    (b'return "\\a\\b\\f\\n\\r\\t\\v\\\'"', "\a\b\f\n\r\t\v'"),
    (b'return "\\x41\\u{48}\\u{1F4DA}\\u{0000041}"', "AH📚A"),
    (b'return "a\\z  \n\t  b"', "ab"),
    (b'return "a\\\r\nb\\\n\rc"', "a\nb\nc"),
    (b"return 'single \"quoted\"'", 'single "quoted"'),
    ('return "é 夏目 📚"'.encode(), "é 夏目 📚"),
    (b'return "\xff\xfe ok \xc3"', "\ufffd\ufffd ok \ufffd"),
    (b'return "-- not a comment ]]"', "-- not a comment ]]"),
    (b"return {1, 2; 3,}", {1: 1, 2: 2, 3: 3}),
    (b"return {[5] = 1, 'a', 'b'}", {5: 1, 1: "a", 2: "b"}),
    (b"return {name = 1, _x2 = true, goto = false}", {"name": 1, "_x2": True, "goto": False}),
    (b"return {[1.5] = 0.1, [2.0] = 5., [-3] = .5, [1e2] = 1E-2}", {1.5: 0.1, 2: 5, -3: 0.5, 100: 0.01}),
    (b"return {[1] = inf, [2] = nan, [3] = 3}", {3: 3}),
    (b"return inf", None),
    (b"return 1e400", math.inf),
    (b"return {1e1048575, 1e-0000000000000000000000000000000001048575, 1" + b"0" * 5000 + b"}",
     {1: math.inf, 2: 0, 3: math.inf}),
    (b"-- /mnt/x.sdr/metadata.epub.lua\nreturn {} -- done\n", {}),
    (b"--[==[ a\n]] still ]==] return --[[x]] {};", {}),
    (b"\xef\xbb\xbfreturn{}", {}),
    (b"-- comment with a CR\rreturn {}", {}),
])
def test_the_data_subset_of_lua_is_read_as_luajit_reads_it(text, value):
    assert parse_lua_data(text) == value
    ok, lua_value = luajit_value(text)
    assert ok and lua_value == value


def test_integral_numbers_are_ints_and_negative_zero_stays_a_float():
    values = parse_lua_data(b"return {[1] = 5, [2] = 1e+15, [3] = -0, [4] = 0.5, [5] = 42.0}")
    assert [type(values[i]) for i in range(1, 6)] == [int, int, float, float, int]
    assert math.copysign(1.0, values[3]) == -1.0


def test_str_input_is_read_as_its_utf8_bytes():
    assert parse_lua_data('return {["夏目"] = "\\u{1F4DA}"}') == {"夏目": "📚"}


def test_lua_list_accepts_only_tables_keyed_1_to_n():
    assert lua_list({}) == []
    assert lua_list({2: "b", 1: "a"}) == ["a", "b"]
    for not_a_list in ({2: "b"}, {1: "a", "x": 1}, {0: "a"}, "ab", None):
        with pytest.raises(LuaDataError, match="not a list"):
            lua_list(not_a_list)


# --- hostile input ---------------------------------------------------------------------------

TOKENS = [b"return", b" ", b"\n", b"{", b"}", b"[", b"]", b"=", b",", b";", b'"', b"'", b"\\", b"--", b"[[", b"]]",
          b"-", b"1", b"0x", b"e", b".", b"inf", b"nan", b"true", b"x", b"\\z", b"\\u{", b"\\9", b"\xff", b"\x00"]


@settings(max_examples=600, deadline=1000)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode),
                 st.lists(st.sampled_from(TOKENS), max_size=80).map(lambda tokens: b"return {" + b"".join(tokens))))
def test_any_input_parses_or_raises_lua_data_error_quickly(text):
    ok, value = parsed(text)
    assert ok or isinstance(value, LuaDataError)


HOSTILE_SHAPES = {
    "an unfinished long comment": lambda n: b"return {" + b"--[[ unfinished\n" * (n // 16),
    "a long table": lambda n: b"return {" + b"1, " * (n // 3) + b"}",
    "many \\z escapes": lambda n: b'return "' + b"\\z " * (n // 3) + b'"',
    "an endless \\u{": lambda n: b'return "' + b"\\u{" + b"0" * n,
    "a huge number": lambda n: b"return " + b"1" * n,
    "an unfinished table": lambda n: b"return {" + b"x " * (n // 2),
    "comments between a value and its comma": lambda n: b"return {" + b"inf" + b" --\n" * (n // 4) + b",}",
}


def parse_seconds(text):
    """The best of two timings of parsing ``text``: a busy machine slows one, rarely both."""
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        parsed(text)
        timings.append(time.perf_counter() - started)
    return min(timings)


@pytest.mark.parametrize("shape", HOSTILE_SHAPES)
def test_hostile_inputs_take_time_linear_in_their_size(shape):
    """Eight times the input costs about eight times the time (a quadratic parser: 64 times).

    A ratio, not a time limit: what a loaded machine does to both sizes cancels out."""
    make = HOSTILE_SHAPES[shape]
    small, large = parse_seconds(make(1 << 16)), parse_seconds(make(1 << 19))
    assert large < 24 * small + 0.05, f"{shape}: 64 KiB in {small:.3f} s, 512 KiB in {large:.3f} s"


# --- agreement with a real LuaJIT ------------------------------------------------------------

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in", "local", "nil",
            "not", "or", "repeat", "return", "then", "true", "until", "while"}
GAPS = [b"", b" ", b"\n", b"\t", b"\r\n", b" --c\n", b"--[[x]]", b"--[==[ ]] ]==]"]


@st.composite
def lua_source(draw, value, depth=0):
    """Lua data source for ``value`` in any spelling LuaJIT and the parser both accept."""
    def gap():
        return draw(st.sampled_from(GAPS))

    if isinstance(value, dict):
        keys = list(value)
        positional = keys == list(range(1, len(keys) + 1)) and draw(st.booleans())
        entries = []
        for key in keys:
            if positional:
                entries.append(draw(lua_source(value[key], depth + 1)))
            elif isinstance(key, str) and NAME.match(key) and key not in KEYWORDS and draw(st.booleans()):
                entries.append(key.encode() + gap() + b"=" + gap() + draw(lua_source(value[key], depth + 1)))
            else:
                entries.append(b"[" + gap() + draw(lua_source(key, depth + 1)) + gap() + b"]" + gap() + b"=" + gap()
                               + draw(lua_source(value[key], depth + 1)))
        separators = [draw(st.sampled_from([b",", b";"])) + gap() for _ in entries]
        body = b"".join(gap() + entry + gap() + sep for entry, sep in zip(entries, separators))
        if entries and draw(st.booleans()):
            body = body[: body.rfind(separators[-1])]
        return b"{" + body + b"}"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return b"nan" if math.isnan(value) else b"inf" if value > 0 else b"-inf"
    if isinstance(value, (int, float)):
        return (draw(st.sampled_from(["%r", "%.17g", "%.14g", "%.3e", "%.1f"])) % value).encode()
    quote = draw(st.sampled_from(['"', "'"]))
    out = []
    for char in value:
        utf8 = char.encode()
        escapes = ["".join(f"\\{byte:03d}" for byte in utf8), "".join(f"\\x{byte:02x}" for byte in utf8),
                   f"\\u{{{ord(char):x}}}"]
        escapes += {"\n": ["\\\n", "\\\r\n", "\\n"], "\t": ["\\t"], "\\": ["\\\\"], quote: ["\\" + quote]}.get(char, [])
        raw = [] if char in "\r\n\\" + quote else [char]
        out.append(draw(st.sampled_from(raw + escapes)) + draw(st.sampled_from(["", "", "\\z", "\\z \n "])))
    return (quote + "".join(out) + quote).encode()


lua_data = st.recursive(
    st.one_of(st.text(max_size=8), st.integers(-(10**6), 10**6), st.booleans(),
              st.floats(allow_nan=True, allow_infinity=True)),
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: {i: item for i, item in enumerate(items, 1)}),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), children, max_size=4)),
    max_leaves=20,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parser_and_luajit_agree_on_lua_data_in_any_spelling(data):
    value = data.draw(st.dictionaries(st.text(max_size=6), lua_data, max_size=5))
    text = b"return" + data.draw(st.sampled_from([b" ", b"\n", b"--[[]]"])) + data.draw(lua_source(value))
    ours, luajit = parsed(text), luajit_value(text)
    event("loaded" if ours[0] else "refused by both" if not luajit[0] else "refused by the parser only")
    assert ours[0] == luajit[0], (text, ours, luajit)
    if ours[0]:
        assert ours[1] == luajit[1]


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_whatever_the_parser_accepts_luajit_loads_to_the_same_value(data):
    value = data.draw(st.dictionaries(st.text(max_size=6), lua_data, max_size=5))
    text = bytearray(b"return " + data.draw(lua_source(value)))
    for _ in range(data.draw(st.integers(1, 3))):  # corrupt it: delete, insert or replace a byte
        at = data.draw(st.integers(0, len(text)))
        edit = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        byte = data.draw(st.sampled_from(list(b"{}[]=,;\"'\\-.0e\n x")))
        text[at:at + (edit != "insert")] = b"" if edit == "delete" else bytes([byte])
    ours = parsed(bytes(text))
    event("the parser accepts the corrupted text" if ours[0] else "the parser refuses it")
    if ours[0]:
        assert luajit_value(bytes(text)) == (True, ours[1]), bytes(text)
