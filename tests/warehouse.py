"""Reading the warehouse back in tests: whole rows keyed by natural keys, not surrogate ids."""

from conftest import query

STATE_QUERIES = {
    "books": """
        SELECT k.book_key, b.title, a.author_name, b.file_hash, b.page_count, b.language, k.series, b.source
        FROM book_keys k JOIN books b USING (book_id) LEFT JOIN authors a ON a.author_id = b.author_id
        ORDER BY k.book_key""",
    "book_authors": """
        SELECT b.book_key, ba.position, a.name
        FROM book_authors ba JOIN book_keys b USING (book_id) JOIN author_names a ON a.author_id = ba.author_id
        ORDER BY 1, 2""",
    "page_views": """
        SELECT b.book_key, p.page, p.start_epoch, p.duration, p.total_pages, d.name
        FROM page_views p JOIN book_keys b USING (book_id) JOIN devices d USING (device_id) ORDER BY 1, 2, 3""",
    "reading_sessions": """
        SELECT b.book_key, s.start_time AT TIME ZONE 'UTC', s.end_time AT TIME ZONE 'UTC', s.duration_seconds,
               s.duration_minutes, s.pages_read, s.start_page, s.end_page, s.total_pages, s.device, s.media_type,
               s.data_source, s.read_instance_id, s.read_number
        FROM reading_sessions s JOIN book_keys b USING (book_id) ORDER BY 1, 2, s.device""",
}


def warehouse_state(url):
    """Everything the warehouse knows about reading, apart from run records and timestamps."""
    return {table: query(url, sql) for table, sql in STATE_QUERIES.items()}


def table_names(url):
    tables = "SELECT tablename FROM pg_tables WHERE schemaname IN ('public', 'bookhelper')"
    return {row[0] for row in query(url, tables)}


def book_seconds(url):
    """Reading seconds per book key, from the sessions."""
    return dict(
        query(
            url,
            """SELECT b.book_key, sum(s.duration_seconds)::bigint
               FROM reading_sessions s JOIN book_keys b USING (book_id) GROUP BY 1""",
        )
    )


# What one fresh load of the final inputs must reproduce. The device that first reported a row or a
# session is history ("best known"), so it is left out.
READING_QUERIES = {
    "books": STATE_QUERIES["books"],
    "book_authors": STATE_QUERIES["book_authors"],
    "page_views": """
        SELECT b.book_key, p.page, p.start_epoch, p.duration, p.total_pages
        FROM page_views p JOIN book_keys b USING (book_id) ORDER BY 1, 2, 3""",
    "reading_sessions": """
        SELECT b.book_key, s.start_time, s.end_time, s.duration_seconds, s.duration_minutes, s.pages_read,
               s.start_page, s.end_page, s.total_pages, s.media_type, s.data_source, s.read_instance_id, s.read_number,
               s.is_parallel_read, s.time_precision
        FROM reading_sessions s JOIN book_keys b USING (book_id) ORDER BY 1, 2, s.data_source""",
    "reading_days": """SELECT day, reading_seconds, books, page_views, ebook_seconds, audiobook_seconds
                       FROM reading_days ORDER BY day""",
    # The reader's own views, as their definitions compute them.
    "book_stats": """
        SELECT k.book_key, s.title, s.author, s.total_read_time_minutes, s.total_pages_read_ebook, s.total_sessions,
               s.read_count
        FROM book_stats s JOIN book_keys k USING (book_id) ORDER BY 1""",
}


def reading_state(url):
    """The reading data of the warehouse: books, page views, sessions and per-day sums, as whole rows."""
    return {table: query(url, sql) for table, sql in READING_QUERIES.items()}


# What a user queries of the optional inputs, by natural keys.
INPUT_QUERIES = {
    "book_sidecars": """
        SELECT k.book_key, s.sidecar_path, s.status, s.status_modified, s.rating, s.review, s.percent_finished,
               s.doc_pages, s.identifiers
        FROM book_sidecars s JOIN book_keys k USING (book_id) ORDER BY 1""",
    "highlights": """
        SELECT k.book_key, h.position, h.kind, h.text, h.note, h.chapter, h.page, h.created_local, h.created_at
        FROM highlights h JOIN book_keys k USING (book_id) ORDER BY 1, 2""",
    "book_calibre": """
        SELECT k.book_key, c.calibre_id, c.match_rule, c.title, c.series, c.publisher, c.isbn, c.rating
        FROM book_calibre c JOIN book_keys k USING (book_id) ORDER BY 1""",
    "book_tags": """
        SELECT k.book_key, g.name, t.source FROM book_tags t JOIN tags g USING (tag_id)
        JOIN book_keys k USING (book_id) ORDER BY 1, 2""",
    "editions": """
        SELECT k.book_key, e.edition_format, e.isbn_specific, e.publisher_specific, e.calibre_id
        FROM book_editions e JOIN book_keys k USING (book_id) ORDER BY 1, 2, 3""",
    "shared_columns": """
        SELECT k.book_key, b.isbn_13, b.isbn_10, p.publisher_name, b.publisher_name
        FROM books b JOIN book_keys k USING (book_id) LEFT JOIN publishers p USING (publisher_id) ORDER BY 1""",
    "publishers": "SELECT publisher_name FROM publishers ORDER BY 1",
    "book_reading": """
        SELECT k.book_key, r.title, r.authors, r.page_count, r.sessions, r.reading_seconds, r.reads, r.status,
               r.rating, r.highlights, r.publisher, r.tags
        FROM book_reading r JOIN book_keys k USING (book_id) ORDER BY 1""",
    "finished_books": """
        SELECT k.book_key, f.read_number, f.finished_at, f.finished_on, f.evidence
        FROM finished_books f JOIN book_keys k USING (book_id) ORDER BY 1, 2, 3, 4""",
    "tag_analytics": "SELECT tag, books, sessions, reading_seconds FROM tag_analytics ORDER BY 1",
    "publisher_reading": "SELECT name, books, sessions, reading_seconds FROM publisher_reading ORDER BY 1",
    "author_reading": "SELECT name, books, sessions, reading_seconds FROM author_reading ORDER BY 1",
    "reading_streaks": "SELECT first_day, last_day, days, reading_seconds FROM reading_streaks ORDER BY 1",
    "audiobooks": """
        SELECT k.book_key, b.audio_seconds, a.asins, a.title, a.matched_by
        FROM books b JOIN book_keys k USING (book_id) LEFT JOIN audible_books a USING (book_id) ORDER BY 1""",
    "audible_days": """
        SELECT k.book_key, d.profile, d.day, d.asins, d.listening_ms, d.duration_seconds, d.reaches_end, d.read_number
        FROM audible_days d JOIN book_keys k USING (book_id) ORDER BY 1, 2, 3""",
    "kindle_intervals": "SELECT * FROM kindle_intervals ORDER BY 1, 2, 3",
    "kindle_finishes": """
        SELECT k.book_key, f.start_time, f.device, f.completed_on
        FROM kindle_finishes f JOIN book_keys k USING (book_id) ORDER BY 1, 2, 3""",
    "kindle_marks": """
        SELECT k.book_key, m.completed_on FROM kindle_marks m JOIN book_keys k USING (book_id) ORDER BY 1, 2""",
    "calibre_asins": "SELECT * FROM calibre_asins ORDER BY 1, 2, 3",
    "tandem": """SELECT book_id IS NOT NULL, session_count, distinct_media_types, media_types_combined,
                        total_duration_all_formats FROM tandem_reading_sessions ORDER BY 2, 5""",
}


def whole_state(url):
    """reading_state and every optional input's rows: every table and view a user queries."""
    return {**reading_state(url), **{name: query(url, sql) for name, sql in INPUT_QUERIES.items()}}
