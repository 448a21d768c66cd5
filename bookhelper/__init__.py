"""bookhelper-etl's package, beside ``extract_koreader_stats.py`` (the one command, which holds the run:
configuration, the CLI, the KOReader statistics source, the transaction, ``--status``, monitoring).

- ``core``: exit codes and errors, settings, logging, the Book, text fitted to the reader's columns.
- ``sessions``: the session rule (the gap), reads and the finish rule, in Python and its SQL rendering.
- ``matching``: which warehouse book a source's book is (identifiers, ISBNs, titles, authors), pure.
- ``schema``: the warehouse's schema, its one owner (tables, views, upgrades, shared SQL renderings).
- ``report``: the HTML report.
- ``exports``: Amazon's data exports read in place (a zip or its folder), for the sources that read them.
- one module per optional source: ``sidecars``, ``calibre``, ``kindle``, ``audible``.

A source module provides, and the registry ``SOURCES`` in ``extract_koreader_stats.py`` is the only place
that names it:

``NAME``
    its name in logs and notes.
``STANDS_ALONE``
    whether a run may load it with no statistics file (KOREADER_STATS_DB unset and the default one absent).
``SYNC_NAME``
    its ``source_name`` in the reader's ``sync_status`` (None: it writes no row there); with one, also
    ``sync_records(counts) -> (records_synced, records_created, records_updated)``.
``SETTINGS``
    its settings (``core.Setting``; one with an ``option`` gets that command-line option too).
``configure(values) -> options or None``
    its options from its settings' values (None: not configured tonight); ``ConfigError`` for a bad one.
``extract(options, workdir) -> snapshot``
    what it reads, as an immutable snapshot; ``SourceSkipped`` when the input cannot be read tonight (a
    warning and a note: the rest of the night loads, and what the warehouse holds of it stays).
``book_isbns(snapshot, books) -> {book_key: {isbn}}``
    the ISBNs it gives the statistics file's new books, to find the reader's existing rows of them.
``load(cursor, run, snapshot) -> counts``
    its statements in the run's one transaction, after the statistics file's (a constant number of round
    trips), returning its immutable counts; ``run`` is a ``core.RunContext``.
``summary(counts) -> [line]``
    its lines of the run's summary.
``ZONE_CHANGED_SQL``
    statements to run when a device's time zone or clock changes ("" when it holds no local times).

Its tables and views are declared in ``schema`` (with their upgrades), so that the schema has one owner.
Nothing happens at import.
"""
