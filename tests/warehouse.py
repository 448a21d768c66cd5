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
