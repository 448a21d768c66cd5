"""The sidecar generator writes what KOReader writes: checked with a real LuaJIT (lupa's).

LuaJIT loads every generated file in an empty environment and gives back the generator's
expected value; a dumper written here in Lua, after KOReader's ``dump.lua`` (sorted keys,
``%q``, ``tostring``), writes the loaded table back byte for byte.
"""

import math
import random
import re

import lupa.luajit21
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samples.sidecars import (
    BROKEN_KINDS,
    ERAS,
    LUA_CODE_LINES,
    MODES,
    OLD_HEADER,
    NotLoadable,
    SidecarBook,
    dump_lua,
    loaded_value,
    lua_number_text,
    lua_quote,
    main,
    sidecar_path,
    sidecar_text,
    write_sidecars,
)
from samples.statistics import generate, make_books

# Loads a chunk as data would be loaded, with no globals (so `inf` and `nan` are nil, as in KOReader),
# and re-dumps a table as dump.lua does with orderedPairs; `trailing_comma` false is the pre-2020.11 layout.
LUA_HELPERS = """
local function load_sidecar(text)
    local chunk, err = load(text, "=sidecar", "t", {})
    if not chunk then return "syntax_error", err end
    local ok, value = pcall(chunk)
    if not ok then return "runtime_error", value end
    return "loaded", value
end

local function sorted_keys(t)
    local keys = {}
    for key in pairs(t) do keys[#keys + 1] = key end
    table.sort(keys, function(a, b)
        if type(a) == type(b) then return a < b end
        return tostring(a) < tostring(b)
    end)
    return keys
end

local function serialize(value, out, level, trailing_comma)
    if type(value) == "table" then
        local keys = sorted_keys(value)
        out[#out + 1] = "{"
        for i, key in ipairs(keys) do
            out[#out + 1] = "\\n" .. string.rep("    ", level + 1) .. "["
            serialize(key, out, level + 1, trailing_comma)
            out[#out + 1] = "] = "
            serialize(value[key], out, level + 1, trailing_comma)
            if trailing_comma or i < #keys then out[#out + 1] = "," end
        end
        if #keys > 0 then out[#out + 1] = "\\n" .. string.rep("    ", level) end
        out[#out + 1] = "}"
    elseif type(value) == "string" then
        out[#out + 1] = string.format("%q", value)
    else
        out[#out + 1] = tostring(value)
    end
end

local function redump(value, header, trailing_comma)
    local out = {}
    serialize(value, out, 0, trailing_comma)
    return "-- " .. header .. "\\nreturn " .. table.concat(out) .. "\\n"
end

return load_sidecar, redump
"""
LUA = lupa.luajit21.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
_load_sidecar, redump = LUA.execute(LUA_HELPERS)


def load_sidecar(text: bytes):
    """LuaJIT's verdict on a file ("loaded", "syntax_error" or "runtime_error") and what it gave."""
    status, value = _load_sidecar(text)
    return status.decode(), value


def python_value(value):
    """A value LuaJIT loaded, as the parser presents it: tables as dicts, strings decoded tolerantly."""
    if lupa.luajit21.lua_type(value) == "table":
        return {python_value(key): python_value(item) for key, item in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    return write_sidecars(root, make_books(12, random.Random(3)), seed=3, broken=True)


def test_every_file_loads_in_luajit_as_the_generator_expects(device):
    verdicts = {"truncated": "syntax_error", "unescaped_newline": "syntax_error", "negative_inf": "runtime_error"}
    for file in device:
        status, value = load_sidecar(file.path.read_bytes())
        if file.kind in LUA_CODE_LINES:
            assert status != "syntax_error", file.path  # real Lua code: a data parser must refuse it itself
        elif file.kind == "empty":
            assert (status, value) == ("loaded", None)
        else:
            assert status == verdicts.get(file.kind, "loaded"), (file.path, value)
            assert (python_value(value) if status == "loaded" else None) == file.expected, file.path


def test_luajit_dumps_what_it_loaded_back_as_the_generator_wrote_it(device):
    for file in device:
        if file.expected is None:
            continue
        status, value = load_sidecar(file.path.read_bytes())
        header = file.path.read_bytes().split(b"\n", 1)[0][3:]
        trailing_comma = file.era != "v2019"
        again = redump(value, header, trailing_comma)
        # Sorted layouts, hash order aside: the generator's own dump of what Lua loaded (inf and nan gone).
        assert again == sidecar_text(loaded_value(file.data, decode=False), header.decode(),
                                     trailing_comma=trailing_comma), file.path


def test_plain_sorted_files_come_back_byte_identical(tmp_path):
    files = write_sidecars(tmp_path, make_books(10, random.Random(5)), seed=5, hostile=False, broken=False)
    sorted_files = [f for f in files if f.era in ("current", "migrated", "v2023") and f.expected is not None]
    assert len(sorted_files) >= 5
    for file in sorted_files:
        text = file.path.read_bytes()
        status, value = load_sidecar(text)
        assert redump(value, text.split(b"\n", 1)[0][3:], True) == text, file.path


def test_the_device_holds_every_mode_era_and_broken_kind_and_one_file_koreader_reads_per_book(device):
    assert {f.mode for f in device} == set(MODES)
    assert {f.era for f in device} == set(ERAS)
    assert set(BROKEN_KINDS) <= {f.kind for f in device}
    assert {"sidecar", "backup", "stale", "not_a_sidecar"} <= {f.kind for f in device}
    read = [f.book.md5 for f in device if f.koreader_reads]
    assert sorted(read) == sorted({f.book.md5 for f in device})
    for file in device:
        assert file.expected is None or file.kind not in BROKEN_KINDS
        assert file.path.stat().st_mtime == file.mtime
    headers = {f.path.read_bytes().split(b"\n", 1)[0] for f in device if f.era == "v2021" and f.kind != "empty"}
    assert headers == {b"-- " + OLD_HEADER.encode()}


def test_each_era_has_its_header_key_order_and_commas(device):
    for file in device:
        if file.expected is None:
            continue
        text = file.path.read_bytes()
        header, body = text.split(b"\n", 1)
        if file.era in ("current", "migrated", "v2023"):  # a backup keeps the name of the file it was
            assert header == b"-- " + file.device_path.removesuffix(".old").encode()
        hash_order = file.era in ("v2021", "v2019")
        sorted_text = sidecar_text(file.data, header[3:].decode(), trailing_comma=file.era != "v2019")
        assert (text != sorted_text) == hash_order, file.path
        assert bool(re.search(rb",\n *\}", body)) == (file.era != "v2019"), file.path


def test_sidecar_paths_follow_the_three_storage_modes():
    book = SidecarBook("0123456789abcdef0123456789abcdef", "x", "A", "fb2.zip", directory="/mnt/onboard/Books")
    assert sidecar_path(book, "doc") == "/mnt/onboard/Books/x.fb2.sdr/metadata.zip.lua"
    assert sidecar_path(book, "dir") == (
        "/mnt/onboard/.adds/koreader/docsettings/mnt/onboard/Books/x.fb2.sdr/metadata.zip.lua")
    assert sidecar_path(book, "hash") == (
        "/mnt/onboard/.adds/koreader/hashdocsettings/01/0123456789abcdef0123456789abcdef.sdr/metadata.zip.lua")
    assert sidecar_path(SidecarBook("ab", "X", "A", "EPUB"), "doc").endswith("/X.sdr/metadata.EPUB.lua")


@pytest.mark.parametrize(("text", "quoted"), [
    ("\t", b'"\\9"'), ("\t1984", b'"\\0091984"'), ("\r", b'"\\13"'), ("\x00", b'"\\0"'), ("\x7f", b'"\\127"'),
    ('"\\', b'"\\"\\\\"'), ("a\nb", b'"a\\\nb"'), ("é📚", '"é📚"'.encode()), (b"\xff", b'"\xff"'),
])
def test_quoting_is_luajits_percent_q(text, quoted):
    assert lua_quote(text) == quoted
    assert LUA.globals().string.format(b"%q", text.encode() if isinstance(text, str) else text) == quoted


# Number keys that %.14g writes exactly, so two keys never become one in the file (KOReader's never do).
number_keys = st.one_of(st.integers(-(10**14) + 1, 10**14 - 1), st.floats(
    allow_nan=False, allow_infinity=False).map(lambda x: float(b"%.14g" % x)).filter(lambda x: not x.is_integer()))
lua_scalars = st.one_of(
    st.text(), st.binary(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(width=64),
    st.sampled_from([-0.0, math.inf, -math.inf, math.nan, 5e-324, 1e15, 1 / 3]),
)


def tables_of(values):
    # Keys of one type per table: orderedPairs compares a number and a string by tostring, which can make
    # a cycle (32 < 100 < "1E100" < 32), and then the order is whatever LuaJIT's quicksort leaves.
    return st.one_of(st.dictionaries(st.text(max_size=12), values, max_size=6),
                     st.dictionaries(number_keys, values, max_size=6))


lua_tables = st.recursive(tables_of(lua_scalars), lambda children: tables_of(st.one_of(lua_scalars, children)),
                          max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(lua_tables, st.booleans())
def test_any_dumped_value_loads_in_luajit_as_loaded_value_says(table, trailing_comma):
    text = sidecar_text(table, "/x.sdr/metadata.epub.lua", trailing_comma=trailing_comma)
    status, value = load_sidecar(text)
    try:
        expected = loaded_value(table)
    except NotLoadable:
        assert status == "runtime_error"
        return
    assert status == "loaded", value
    assert python_value(value) == expected
    header = b"/x.sdr/metadata.epub.lua"
    assert redump(value, header, trailing_comma) == sidecar_text(
        loaded_value(table, decode=False), header.decode(), trailing_comma=trailing_comma)


@pytest.mark.parametrize("number", [0.057359307359307, 1e15, 5e-06, -0.0, 2**53, 1 / 3, 5e-324, 1.7976931348623157e308,
                                    math.inf, -math.inf, math.nan, -math.nan, 42, -7])
def test_numbers_are_written_as_luajits_tostring_writes_them(number):
    assert lua_number_text(number) == LUA.globals().tostring(number)


def test_dump_lua_writes_scalars_as_tostring_does():
    assert dump_lua({1: 0.057359307359307, 2: 1e15, 3: 5e-06, 4: -0.0, 5: math.inf, 6: -math.inf, 7: math.nan}) == (
        b"{\n    [1] = 0.057359307359307,\n    [2] = 1e+15,\n    [3] = 5e-06,\n    [4] = -0,\n"
        b"    [5] = inf,\n    [6] = -inf,\n    [7] = nan,\n}")
    assert dump_lua({"b": True, "a": False, 10: {}, 9: "x"}, trailing_comma=False) == (
        b'{\n    [9] = "x",\n    [10] = {},\n    ["a"] = false,\n    ["b"] = true\n}')


def test_books_can_be_given_as_md5_title_authors_ext_tuples(tmp_path):
    books = [("d41d8cd98f00b204e9800998ecf8427e", "Dune", "Frank Herbert", "azw3"),
             ("0cc175b9c0f1b6a831c399e269772661", "Kindred", "Octavia E. Butler", "PDF")]
    files = write_sidecars(tmp_path, books, hostile=False)
    read = {f.book.md5: f for f in files if f.koreader_reads}
    assert read["d41d8cd98f00b204e9800998ecf8427e"].path.name == "metadata.azw3.lua"
    assert read["0cc175b9c0f1b6a831c399e269772661"].expected["doc_props"]["title"] == "Kindred"
    assert "last_page" in read["0cc175b9c0f1b6a831c399e269772661"].expected  # a PDF keeps a page number


def test_the_cli_writes_sidecars_for_the_books_of_a_statistics_file(tmp_path, capsys):
    stats = generate(tmp_path / "statistics.sqlite3", books=8, days=3)
    assert main([str(tmp_path / "device"), "--stats-db", str(stats), "--broken"]) == 0
    written = capsys.readouterr().out.splitlines()
    assert len(written) == len(list((tmp_path / "device").rglob("*.lua*")))
    loaded = [load_sidecar(path.read_bytes()) for path in (tmp_path / "device").rglob("metadata.*.lua*")]
    titles = {python_value(value)["doc_props"]["title"] for status, value in loaded if status == "loaded" and value}
    assert titles == {b.title for b in make_books(8, random.Random(1))}
