"""The PostgreSQL catalog of a warehouse, read as plain data, and the comparisons the schema tests make.

The reader's schema is the contract: a warehouse may only add to it (tables, views, indexes, triggers,
functions, and columns appended after the reader's). ``missing_or_changed`` lists where one catalog fails to
contain another exactly; ``differences`` compares two both ways (an upgraded warehouse against a fresh one).
"""

import hashlib
import re

import psycopg2

FUNCTIONS = "functions"

# Partitioned tables count as tables: whoever reads the warehouse cannot tell them apart.
RELATIONS_SQL = """
SELECT n.nspname || '.' || c.relname, CASE WHEN c.relkind = 'v' THEN 'view' ELSE 'table' END, c.oid
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v') AND n.nspname = ANY(%s)
"""
COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
# Only PK, unique, check and foreign key: PostgreSQL 18 also stores NOT NULL as constraints ('n'), and
# nullability is already part of each column.
CONSTRAINTS_SQL = """
SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %s AND contype IN ('p', 'u', 'c', 'f')
"""
INDEXES_SQL = """
SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %s
"""
# Internal triggers are the ones PostgreSQL makes for foreign keys; the constraints already cover those.
TRIGGERS_SQL = "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal"
# The identity arguments are part of the name, so that overloads do not collapse into one entry.
FUNCTIONS_SQL = """
SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', p.prosrc
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY(%s)
"""


def catalog(url, schemas=("public",)):
    """Describe every table and view of ``schemas``, and their functions, as plain comparable data.

    Keys are "schema.name", each -> {"kind": 'table'|'view', "columns": [(name, type, not_null, default)] in
    column order, "constraints": {(name, contype, definition)}, "indexes": {(name, definition)},
    "triggers": {(name, definition)}}; plus "functions" -> {("schema.name(args)", md5 of the source)}.
    """
    conn = psycopg2.connect(url)
    try:
        # Read-only, so that a helper meant to observe the warehouse can never change it.
        conn.set_session(readonly=True)
        with conn.cursor() as cursor:
            # Deparsed SQL qualifies names by the session's search_path; a fixed one makes both databases
            # print the same text whatever their role or database settings (defaults stay
            # nextval('books_book_id_seq'::regclass)).
            cursor.execute("SET search_path = public")
            cursor.execute(RELATIONS_SQL, (list(schemas),))
            relations = cursor.fetchall()
            found = {}
            for name, kind, oid in relations:
                found[name] = {
                    "kind": kind,
                    "columns": _rows(cursor, COLUMNS_SQL, oid),
                    "constraints": set(_rows(cursor, CONSTRAINTS_SQL, oid)),
                    "indexes": {(index, _unqualified(text, schemas)) for index, text in
                                _rows(cursor, INDEXES_SQL, oid)},
                    "triggers": {(trigger, _unqualified(text, schemas)) for trigger, text in
                                 _rows(cursor, TRIGGERS_SQL, oid)},
                }
            cursor.execute(FUNCTIONS_SQL, (list(schemas),))
            # A digest of the body is enough to tell "same function" and keeps failure messages short.
            found[FUNCTIONS] = {(name, hashlib.md5(source.encode()).hexdigest()) for name, source in
                                cursor.fetchall()}
        conn.rollback()
        return found
    finally:
        conn.close()


def _rows(cursor, statement, oid):
    cursor.execute(statement, (oid,))
    return [tuple(row) for row in cursor.fetchall()]


def _unqualified(definition, schemas):
    # pg_get_indexdef and pg_get_triggerdef always qualify the table ("ON public.books"); without the schema
    # the texts of two databases compare equal even when the schemas are named differently.
    for schema in schemas:
        quoted = schema if re.fullmatch(r"[a-z_][a-z0-9_$]*", schema) else '"' + schema.replace('"', '""') + '"'
        definition = re.sub(r'(?<![\w$".])' + re.escape(quoted) + r"\.", "", definition)
    return definition


def missing_or_changed(reader, ours):
    """Every way ``ours`` fails to contain ``reader`` exactly, one line each; [] when ours is a superset.

    Extra relations, columns appended after the reader's, and extra constraints, indexes, triggers and
    functions are allowed.
    """
    return _compare(reader, ours, exact=False, names=("the reader's", "ours"))


def differences(one, other):
    """Every difference between two catalogs, both ways, one line each; [] when they are identical."""
    return _compare(one, other, exact=True, names=("the first", "the second"))


def _compare(expected, actual, exact, names):
    # One walk serves both comparisons: ``exact`` only adds what ``actual`` has beyond ``expected``.
    first, second = names
    problems = _named_sets("function", expected.get(FUNCTIONS, set()), actual.get(FUNCTIONS, set()), exact, names)
    for name in sorted(set(expected) - {FUNCTIONS}):
        want, have = expected[name], actual.get(name)
        if have is None:
            problems.append(f"{want['kind']} {name}: missing from {second}")
            continue
        if have["kind"] != want["kind"]:
            problems.append(f"{name}: a {have['kind']} in {second}, a {want['kind']} in {first}")
            continue
        problems += _columns(name, want["columns"], have["columns"], exact, names)
        for part, what in (("constraints", "constraint"), ("indexes", "index"), ("triggers", "trigger")):
            problems += _named_sets(f"{name}: {what}", want[part], have[part], exact, names)
    if exact:
        problems += [f"{actual[name]['kind']} {name}: only in {second}"
                     for name in sorted(set(actual) - set(expected) - {FUNCTIONS})]
    return problems


def _columns(relation, want, have, exact, names):
    first, second = names
    problems = []
    positions = {column[0]: position for position, column in enumerate(have)}
    for position, (column, *attributes) in enumerate(want):
        if column not in positions:
            problems.append(f"{relation}: column {column} missing from {second}")
            continue
        # The reader's columns come first and in their order (SELECT * and CREATE OR REPLACE VIEW rely on
        # positions); ours may only follow them.
        if positions[column] != position:
            problems.append(f"{relation}: column {column} is number {positions[column] + 1} in {second}, "
                            f"number {position + 1} in {first}")
        for label, wanted, found in zip(("type", "not null", "default"), attributes, have[positions[column]][1:]):
            if wanted != found:
                problems.append(f"{relation}: column {column} {label} is {found!r} in {second}, {wanted!r} in {first}")
    if exact:
        known = {column[0] for column in want}
        problems += [f"{relation}: column {column[0]} ({column[1]}) only in {second}"
                     for column in have if column[0] not in known]
    return problems


def _named_sets(what, want, have, exact, names):
    # Matched by name, so that a changed definition reads as one "changed" line, not "missing" plus "extra".
    first, second = names
    wanted, found = _by_name(want), _by_name(have)
    problems = []
    for name in sorted(wanted):
        if name not in found:
            problems.append(f"{what} {name} missing from {second}")
        elif found[name] != wanted[name]:
            problems.append(f"{what} {name} is {_shown(found[name])} in {second}, "
                            f"{_shown(wanted[name])} in {first}")
    if exact:
        problems += [f"{what} {name} only in {second}" for name in sorted(set(found) - set(wanted))]
    return problems


def _by_name(items):
    grouped = {}
    for name, *rest in items:
        grouped.setdefault(name, set()).add(tuple(rest))
    return grouped


def _shown(variants):
    return " / ".join(" ".join(str(part) for part in variant) for variant in sorted(variants))
