"""The warehouse's schema, its one owner: the reader's objects (created only where missing), the job's
own schema ``bookhelper``, the upgrades of older releases' warehouses, and the SQL renderings of rules that
several statements share."""

import re
from dataclasses import dataclass

from bookhelper.core import STATS_SOURCE, UNTITLED, ConfigError, component_logger
from bookhelper.sessions import REACHES_END_SQL, SAME_FINISH_DAYS

SCHEMA_VERSION = 7


# The reading_sessions rows the job writes, by their data_source: its views count these and no other job's.
OUR_SOURCES = "('koreader', 'kindle', 'audible')"


def merge_page_views(columns: str, rows: str) -> str:
    """The one rendering of the page-view rule: of the views of one page at one start time, the longest is
    kept, whoever sent it and how often (a re-sent or grown row never doubles a page's time). ``columns``
    are the book id, page, start epoch, duration, total pages and device id of ``rows``."""
    return (f"INSERT INTO page_views AS pv (book_id, page, start_epoch, duration, total_pages, device_id)\n"
            f"SELECT DISTINCT ON (1, 2, 3) {columns}\nFROM {rows}\nORDER BY 1, 2, 3, 4 DESC\n"
            "ON CONFLICT (book_id, page, start_epoch) DO UPDATE\n"
            "    SET duration = EXCLUDED.duration, total_pages = EXCLUDED.total_pages\n"
            "    WHERE EXCLUDED.duration > pv.duration")


def same_name(column: str, other: str) -> str:
    """The one rendering of a name lookup in the job's name tables (author_names, tags): through their md5
    index (a name may be longer than a btree entry holds), then the name itself."""
    return f"md5({column}) = md5({other}) AND {column} = {other}"


def unnamed_authors_sql(condition: str) -> str:
    """Authors that no book of the job names any more (after an edit, a merge, a forgotten book), when
    ``condition`` holds: a row the job created goes unless another book refers to it; a reader's row only
    loses the job's name on it."""
    return f"""
DELETE FROM authors r USING author_names a
WHERE ({condition}) AND a.author_id = r.author_id AND a.created
  AND NOT EXISTS (SELECT 1 FROM book_authors ba WHERE ba.author_id = a.author_id)
  AND NOT EXISTS (SELECT 1 FROM books b WHERE b.author_id = a.author_id);
DELETE FROM author_names a
WHERE ({condition}) AND NOT EXISTS (SELECT 1 FROM book_authors ba WHERE ba.author_id = a.author_id);
"""


def apply_export_sessions(source: str, media_type: str, stats_source: str) -> str:
    """An export source's sessions as current state: ``incoming_sessions`` (book_id, start_time, end_time,
    duration_seconds, pages_read, device, read_number, read_instance_id, time_precision) replaces every
    reading_sessions row of ``source``; rows that did not change are left alone. A session whose key
    (book_id, start_time, device) another source's row holds is left out and counted. Then the export books
    no session holds any more go (FORGET_EXPORT_BOOKS_SQL). Returns the counts as (name, n) rows."""
    key = "(s.book_id, s.start_time, s.device) = (f.book_id, f.start_time, f.device)"
    values = "end_time, duration_seconds, pages_read, read_number, read_instance_id, time_precision"
    return f"""
CREATE TEMP TABLE export_counts (name text, n bigint) ON COMMIT DROP;
WITH updated AS (
    UPDATE reading_sessions s
    SET end_time = f.end_time, duration_seconds = f.duration_seconds,
        duration_minutes = greatest(1, (f.duration_seconds + 30) / 60), pages_read = f.pages_read,
        read_number = f.read_number, read_instance_id = f.read_instance_id, time_precision = f.time_precision
    FROM incoming_sessions f
    WHERE s.data_source = '{source}' AND {key}
      AND (s.{values.replace(", ", ", s.")}) IS DISTINCT FROM (f.{values.replace(", ", ", f.")})
    RETURNING 1
), inserted AS (
    INSERT INTO reading_sessions (book_id, start_time, end_time, duration_seconds, duration_minutes, pages_read,
                                  device, media_type, data_source, read_instance_id, read_number,
                                  is_parallel_read, device_stats_source, time_precision)
    SELECT f.book_id, f.start_time, f.end_time, f.duration_seconds, greatest(1, (f.duration_seconds + 30) / 60),
           f.pages_read, f.device, '{media_type}', '{source}', f.read_instance_id, f.read_number, false,
           '{stats_source}', f.time_precision
    FROM incoming_sessions f
    WHERE NOT EXISTS (SELECT 1 FROM reading_sessions s WHERE {key})
    RETURNING 1
), removed AS (
    DELETE FROM reading_sessions s
    WHERE s.data_source = '{source}' AND NOT EXISTS (SELECT 1 FROM incoming_sessions f WHERE {key})
    RETURNING 1
)
INSERT INTO export_counts
SELECT 'inserted', count(*) FROM inserted
UNION ALL SELECT 'updated', count(*) FROM updated
UNION ALL SELECT 'removed', count(*) FROM removed
UNION ALL SELECT 'clashing', count(*) FROM incoming_sessions f
          WHERE EXISTS (SELECT 1 FROM reading_sessions s WHERE {key} AND s.data_source <> '{source}');
""" + FORGET_EXPORT_BOOKS_SQL + "SELECT name, n FROM export_counts;"


def report_clashes(label: str, counts: dict) -> None:
    """One WARNING when apply_export_sessions left sessions out for another source's rows."""
    if counts.get("clashing"):
        component_logger("LOAD").warning("%s: sessions left out (another source's row holds their book, start "
                                         "and device): %d", label, counts["clashing"])


def book_keys_json(excluded: str) -> str:
    """The job's book keys by book id, as a JSON object, less those matching the regular expression ``excluded``
    (the source's own books, which its load makes): a read's id derives from its book's key, never from an id."""
    return ("coalesce((SELECT json_object_agg(book_id, book_key ORDER BY book_id) FROM book_keys"
            f" WHERE book_key !~ '{excluded}'), '{{}}')::text")


def titled_books_json(excluded: str) -> str:
    """The job's books as a JSON array of [book_id, title, first author] (the candidates of the title and
    author rule), less those whose book_key matches the regular expression ``excluded``."""
    return f"""coalesce((SELECT json_agg(json_build_array(k.book_id, b.title,
                     (SELECT a.name FROM book_authors ba JOIN author_names a USING (author_id)
                      WHERE ba.book_id = k.book_id ORDER BY ba.position LIMIT 1)) ORDER BY k.book_id)
                 FROM book_keys k JOIN books b USING (book_id) WHERE k.book_key !~ '{excluded}'), '[]')::text"""


# A book an export brought (book_key kindle:... or audible:...) that no session and no Kindle finish known only
# by its record holds any more: a row the job created goes, a reader's row it took only loses the job's identity
# on it; authors only it named go too.
FORGET_EXPORT_BOOKS_SQL = """
CREATE TEMP TABLE forgotten_books ON COMMIT DROP AS
SELECT k.book_id, k.created_book FROM book_keys k
WHERE (k.book_key LIKE 'kindle:%%' OR k.book_key LIKE 'audible:%%')
  AND NOT EXISTS (SELECT 1 FROM reading_sessions s WHERE s.book_id = k.book_id)
  AND NOT EXISTS (SELECT 1 FROM kindle_marks m WHERE m.book_id = k.book_id);
DELETE FROM book_keys k USING forgotten_books f WHERE k.book_id = f.book_id;
DELETE FROM books b USING forgotten_books f WHERE b.book_id = f.book_id AND f.created_book;
""" + unnamed_authors_sql("EXISTS (SELECT 1 FROM forgotten_books)")


# Tandem reads, re-derived at the end of every run: an audiobook read (a profile's listening of one book, read by
# read, in audible_days) whose span overlaps an ebook read of the same book (any source's) by at least
# ETL_TANDEM_MIN_OVERLAP_DAYS days (0: any overlap) is that read: its sessions take the ebook read's
# read_instance_id and read_number (the earliest such ebook read's), and both reads' sessions are
# is_parallel_read. The one rendering of the rule; an audiobook read that overlaps none keeps its own read.
TANDEM_SQL = """
CREATE TEMP TABLE tandem_reads ON COMMIT DROP AS
WITH audio AS (
    SELECT book_id, read_instance_id, min(start_time) AS started, max(end_time) AS ended
    FROM audible_days GROUP BY book_id, read_instance_id
), ebook AS (
    SELECT book_id, read_instance_id, min(read_number) AS read_number, min(start_time) AS started,
           max(end_time) AS ended
    FROM reading_sessions
    WHERE media_type = 'ebook' AND data_source IN """ + OUR_SOURCES + """
      AND book_id = ANY((SELECT array_agg(DISTINCT book_id) FROM audible_days)::integer[])
    GROUP BY book_id, read_instance_id
)
SELECT DISTINCT ON (a.read_instance_id) a.read_instance_id AS audio_read, e.read_instance_id AS ebook_read,
       e.read_number
FROM audio a JOIN ebook e USING (book_id)
WHERE least(a.ended, e.ended) - greatest(a.started, e.started) >= make_interval(days => %(tandem_days)s)
  AND least(a.ended, e.ended) > greatest(a.started, e.started)
ORDER BY a.read_instance_id, e.started, e.read_instance_id;
UPDATE reading_sessions s
SET read_instance_id = coalesce(t.ebook_read, a.read_instance_id), read_number = coalesce(t.read_number, a.read_number),
    is_parallel_read = t.audio_read IS NOT NULL
FROM audible_days a LEFT JOIN tandem_reads t ON t.audio_read = a.read_instance_id
WHERE s.data_source = 'audible' AND (s.book_id, s.start_time, s.device) = (a.book_id, a.start_time, a.device)
  AND (s.read_instance_id, s.read_number, s.is_parallel_read)
      IS DISTINCT FROM (coalesce(t.ebook_read, a.read_instance_id), coalesce(t.read_number, a.read_number),
                        t.audio_read IS NOT NULL);
UPDATE reading_sessions s
SET is_parallel_read = s.read_instance_id IN (SELECT ebook_read FROM tandem_reads)
WHERE s.media_type = 'ebook' AND s.data_source IN """ + OUR_SOURCES + """
  AND (s.is_parallel_read OR s.read_instance_id IN (SELECT ebook_read FROM tandem_reads))
  AND s.is_parallel_read IS DISTINCT FROM (s.read_instance_id IN (SELECT ebook_read FROM tandem_reads));
"""


# The reader's warehouse, as their own scripts create it (../shared/reader-warehouse/): created here only
# where it is missing, so that a fresh database and one the reader initialised hold the same public schema.
# Nothing here alters an object that exists; a test compares the catalog with the reader's scripts.
READER_SCHEMA_DDL = """
CREATE TABLE IF NOT EXISTS public.authors (
    author_id           serial PRIMARY KEY,
    author_name         varchar(255) NOT NULL,
    alternate_names     jsonb DEFAULT '[]',
    author_slug         varchar(255),
    author_hardcover_id varchar(100) UNIQUE,
    book_count          integer,
    contributions       jsonb DEFAULT '[]',
    born_year           integer,
    is_bipoc            boolean DEFAULT false,
    is_lgbtq            boolean DEFAULT false,
    identifiers         jsonb DEFAULT '{}',
    created_at          timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at          timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_authors_hardcover_id ON public.authors (author_hardcover_id);
CREATE INDEX IF NOT EXISTS idx_authors_name ON public.authors (author_name);
CREATE INDEX IF NOT EXISTS idx_authors_diversity ON public.authors (is_bipoc, is_lgbtq)
    WHERE is_bipoc = true OR is_lgbtq = true;
CREATE TABLE IF NOT EXISTS public.publishers (
    publisher_id           serial PRIMARY KEY,
    publisher_name         varchar(255) NOT NULL UNIQUE,
    alternate_names        text[] DEFAULT '{}',
    publisher_hardcover_id integer UNIQUE,
    canonical_hardcover_id integer,
    parent_id              integer,
    parent_publisher       varchar(255),
    country                varchar(100),
    notes                  text,
    created_at             timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at             timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_publishers_hardcover_id ON public.publishers (publisher_hardcover_id);
CREATE INDEX IF NOT EXISTS idx_publishers_canonical_id ON public.publishers (canonical_hardcover_id);
CREATE TABLE IF NOT EXISTS public.books (
    book_id                serial PRIMARY KEY,
    title                  varchar(255) NOT NULL,
    author                 varchar(255),
    author_id              integer REFERENCES public.authors (author_id) ON DELETE SET NULL,
    isbn_13                varchar(20),
    isbn_10                varchar(20),
    asin                   varchar(20),
    hardcover_book_id      varchar(100),
    publisher_id           integer REFERENCES public.publishers (publisher_id) ON DELETE SET NULL,
    publisher_name         varchar(255),
    series_name            varchar(255),
    series_number          numeric(5,2),
    page_count             integer,
    audio_seconds          integer,
    language               char(2) DEFAULT 'en',
    published_date         date,
    description            text,
    hardcover_rating       numeric(3,2),
    hardcover_rating_count integer,
    user_rating            numeric(3,2),
    user_rating_date       timestamp,
    author_hardcover_id    varchar(100),
    is_bipoc               boolean DEFAULT false,
    is_lgbtq               boolean DEFAULT false,
    author_birth_year      integer,
    author_books_count     integer,
    genres                 jsonb DEFAULT '[]',
    moods                  jsonb DEFAULT '[]',
    content_warnings       jsonb DEFAULT '[]',
    cached_tags            jsonb DEFAULT '[]',
    alternative_titles     jsonb DEFAULT '[]',
    activities_count       integer,
    cover_color            jsonb,
    users_read_count       integer,
    users_count            integer,
    file_hash              varchar(32),
    notes                  integer DEFAULT 0,
    highlights             integer DEFAULT 0,
    source                 varchar(50) DEFAULT 'koreader',
    device_stats_source    varchar(100),
    cover_url              text,
    user_owns_ebook        boolean DEFAULT false,
    user_owns_audiobook    boolean DEFAULT false,
    user_owns_physical     boolean DEFAULT false,
    user_reading_status    varchar(50),
    user_added_date        timestamp,
    media_types_owned      text[] DEFAULT '{"ebook"}',
    owned_physical_formats text[] DEFAULT '{}',
    owned_special_editions text[] DEFAULT '{}',
    read_count             integer DEFAULT 1,
    created_at             timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at             timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_books_isbn_13 ON public.books (isbn_13);
CREATE INDEX IF NOT EXISTS idx_books_asin ON public.books (asin);
CREATE INDEX IF NOT EXISTS idx_books_author_id ON public.books (author_id);
CREATE INDEX IF NOT EXISTS idx_books_hardcover_id ON public.books (hardcover_book_id);
CREATE INDEX IF NOT EXISTS idx_books_publisher_id ON public.books (publisher_id);
CREATE INDEX IF NOT EXISTS idx_books_source ON public.books (source);
CREATE INDEX IF NOT EXISTS idx_books_published_date ON public.books (published_date);
CREATE INDEX IF NOT EXISTS idx_books_cached_tags ON public.books USING gin (cached_tags);
CREATE INDEX IF NOT EXISTS idx_books_genres ON public.books USING gin (genres);
CREATE INDEX IF NOT EXISTS idx_books_moods ON public.books USING gin (moods);
CREATE INDEX IF NOT EXISTS idx_books_content_warnings ON public.books USING gin (content_warnings);
CREATE INDEX IF NOT EXISTS idx_books_author_diversity ON public.books (author_id, is_bipoc, is_lgbtq);
CREATE INDEX IF NOT EXISTS idx_books_user_ownership ON public.books (user_owns_ebook, user_owns_audiobook,
    user_owns_physical) WHERE user_owns_ebook = true OR user_owns_audiobook = true OR user_owns_physical = true;
CREATE INDEX IF NOT EXISTS idx_books_reading_status ON public.books (user_reading_status)
    WHERE user_reading_status IS NOT NULL;
CREATE TABLE IF NOT EXISTS public.book_editions (
    edition_id       serial PRIMARY KEY,
    book_id          integer NOT NULL REFERENCES public.books (book_id) ON DELETE CASCADE,
    edition_format   varchar(50),
    edition_name     varchar(255),
    publication_year integer,
    publisher_specific varchar(255),
    isbn_specific    varchar(20),
    language         varchar(10),
    pages            integer,
    audio_seconds    integer,
    release_date     date,
    condition        varchar(50),
    notes            text,
    date_acquired    date,
    display_location varchar(100),
    created_at       timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_book_editions_book_id ON public.book_editions (book_id);
CREATE INDEX IF NOT EXISTS idx_book_editions_format ON public.book_editions (edition_format);
CREATE INDEX IF NOT EXISTS idx_book_editions_format_book ON public.book_editions (edition_format, book_id);
CREATE TABLE IF NOT EXISTS public.reading_sessions (
    session_id          bigserial PRIMARY KEY,
    book_id             integer NOT NULL REFERENCES public.books (book_id) ON DELETE CASCADE,
    start_time          timestamp NOT NULL,
    duration_minutes    integer NOT NULL,
    device              varchar(50) NOT NULL,
    media_type          varchar(20) DEFAULT 'ebook',
    pages_read          integer,
    read_instance_id    uuid DEFAULT gen_random_uuid(),
    is_parallel_read    boolean DEFAULT false,
    read_number         integer DEFAULT 1,
    end_time            timestamp,
    data_source         varchar(50) DEFAULT 'koreader',
    device_stats_source varchar(100),
    created_at          timestamp DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (book_id, start_time, device),
    CONSTRAINT duration_positive CHECK (duration_minutes > 0),
    CONSTRAINT valid_start_time CHECK (start_time <= CURRENT_TIMESTAMP)
);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_book_id ON public.reading_sessions (book_id);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_start_time ON public.reading_sessions (start_time);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_device ON public.reading_sessions (device);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_media_type ON public.reading_sessions (media_type);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_data_source ON public.reading_sessions (data_source);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_read_instance ON public.reading_sessions (read_instance_id);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_book_date ON public.reading_sessions (book_id, start_time DESC);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_date_device ON public.reading_sessions (start_time DESC, device);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_parallel ON public.reading_sessions (is_parallel_read,
    read_instance_id) WHERE is_parallel_read = true;
CREATE TABLE IF NOT EXISTS public.sync_status (
    sync_id               serial PRIMARY KEY,
    source_name           varchar(50) NOT NULL UNIQUE,
    last_sync_time        timestamp,
    last_sync_cursor      varchar(255),
    records_synced        integer DEFAULT 0,
    records_created       integer DEFAULT 0,
    records_updated       integer DEFAULT 0,
    sync_status           varchar(50) DEFAULT 'pending',
    error_message         text,
    sync_duration_seconds integer,
    next_scheduled_sync   timestamp,
    sync_mode             varchar(50) DEFAULT 'incremental',
    created_at            timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at            timestamp DEFAULT CURRENT_TIMESTAMP
);
DO $reader$
BEGIN
    IF to_regclass('public.book_stats') IS NULL THEN
        CREATE VIEW public.book_stats AS
        SELECT b.book_id, b.title, b.author,
               max(rs.start_time) AS last_opened,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'ebook') AS total_read_time_ebook_minutes,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'audiobook') AS total_read_time_audio_minutes,
               sum(rs.duration_minutes) AS total_read_time_minutes,
               sum(rs.pages_read) FILTER (WHERE rs.media_type = 'ebook') AS total_pages_read_ebook,
               count(*) FILTER (WHERE rs.media_type = 'ebook') AS ebook_session_count,
               count(*) FILTER (WHERE rs.media_type = 'audiobook') AS audiobook_session_count,
               count(*) AS total_sessions,
               count(DISTINCT rs.read_instance_id) AS read_count,
               CASE WHEN sum(rs.pages_read) FILTER (WHERE rs.media_type = 'ebook') > 0
                    THEN round(sum(rs.pages_read) FILTER (WHERE rs.media_type = 'ebook')::numeric
                               / NULLIF(sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'ebook'), 0), 2)
               END AS avg_reading_speed_pages_per_minute
        FROM public.books b LEFT JOIN public.reading_sessions rs ON b.book_id = rs.book_id
        GROUP BY b.book_id, b.title, b.author;
    END IF;
    IF to_regclass('public.reading_timeline') IS NULL THEN
        CREATE VIEW public.reading_timeline AS
        SELECT rs.session_id, rs.start_time, rs.end_time, rs.duration_minutes, rs.pages_read, rs.media_type,
               rs.device, rs.data_source, rs.read_instance_id, rs.is_parallel_read, rs.read_number, b.book_id,
               b.title, b.author, b.series_name, b.series_number, b.cached_tags, p.publisher_name AS publisher,
               a.author_name
        FROM public.reading_sessions rs
        JOIN public.books b ON rs.book_id = b.book_id
        LEFT JOIN public.publishers p ON b.publisher_id = p.publisher_id
        LEFT JOIN public.authors a ON b.author_id = a.author_id
        ORDER BY rs.start_time DESC;
    END IF;
    IF to_regclass('public.publisher_analytics') IS NULL THEN
        CREATE VIEW public.publisher_analytics AS
        SELECT p.publisher_id, p.publisher_name, p.parent_id,
               count(DISTINCT b.book_id) AS books_read,
               count(DISTINCT rs.session_id) AS total_sessions,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'ebook') AS total_ebook_minutes,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'audiobook') AS total_audio_minutes,
               avg(b.hardcover_rating) AS avg_hardcover_rating,
               avg(b.user_rating) AS avg_user_rating
        FROM public.publishers p
        LEFT JOIN public.books b ON p.publisher_id = b.publisher_id
        LEFT JOIN public.reading_sessions rs ON b.book_id = rs.book_id
        GROUP BY p.publisher_id, p.publisher_name, p.parent_id;
    END IF;
    IF to_regclass('public.author_analytics') IS NULL THEN
        CREATE VIEW public.author_analytics AS
        SELECT a.author_id, a.author_name, a.born_year, a.is_bipoc, a.is_lgbtq,
               count(DISTINCT b.book_id) AS books_read,
               count(DISTINCT rs.session_id) AS total_sessions,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'ebook') AS total_ebook_minutes,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'audiobook') AS total_audio_minutes,
               avg(b.hardcover_rating) AS avg_hardcover_rating,
               avg(b.user_rating) AS avg_user_rating
        FROM public.authors a
        LEFT JOIN public.books b ON a.author_id = b.author_id
        LEFT JOIN public.reading_sessions rs ON b.book_id = rs.book_id
        GROUP BY a.author_id, a.author_name, a.born_year, a.is_bipoc, a.is_lgbtq;
    END IF;
    IF to_regclass('public.tandem_reading_sessions') IS NULL THEN
        CREATE VIEW public.tandem_reading_sessions AS
        SELECT read_instance_id, book_id,
               count(*) AS session_count,
               count(DISTINCT media_type) AS distinct_media_types,
               min(start_time) AS instance_start,
               max(end_time) AS instance_end,
               string_agg(DISTINCT media_type, ', ' ORDER BY media_type) AS media_types_combined,
               sum(duration_minutes) AS total_duration_all_formats,
               extract(epoch FROM (max(end_time) - min(start_time))) / 60 AS overlap_aware_duration_minutes
        FROM public.reading_sessions
        WHERE is_parallel_read = true
        GROUP BY read_instance_id, book_id;
    END IF;
    IF to_regprocedure('public.update_modified_column()') IS NULL THEN
        CREATE FUNCTION public.update_modified_column() RETURNS trigger AS $function$
BEGIN
  NEW.updated_at = CURRENT_TIMESTAMP;
  RETURN NEW;
END;
$function$ LANGUAGE plpgsql;
    END IF;
""" + "".join(f"""    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'update_{table}_updated_at'
                   AND tgrelid = 'public.{table}'::regclass) THEN
        CREATE TRIGGER update_{table}_updated_at BEFORE UPDATE ON public.{table}
        FOR EACH ROW EXECUTE FUNCTION public.update_modified_column();
    END IF;
""" for table in ("authors", "publishers", "books", "sync_status")) + """END
$reader$;
-- What the job adds to the reader's tables: appended columns only.
ALTER TABLE public.reading_sessions ADD COLUMN IF NOT EXISTS duration_seconds integer,
    ADD COLUMN IF NOT EXISTS start_page integer, ADD COLUMN IF NOT EXISTS end_page integer,
    ADD COLUMN IF NOT EXISTS total_pages integer,
    ADD COLUMN IF NOT EXISTS time_precision text NOT NULL DEFAULT 'second';
ALTER TABLE public.book_editions ADD COLUMN IF NOT EXISTS calibre_id integer,
    ADD COLUMN IF NOT EXISTS calibre_uuid text;
"""


# The job's own objects, in a schema of their own: what the reader's tables have no place for (page views,
# devices, KOReader's identity of each book, runs, Calibre, sidecars, highlights) and richer views.
# Every per-book table refers to book_keys, the job's identity of a reader's book: re-homing a book onto
# another warehouse row is one UPDATE there (ON UPDATE CASCADE), and a book the reader deletes takes the
# job's rows of it along.
SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS bookhelper;
CREATE TABLE IF NOT EXISTS bookhelper.schema_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS bookhelper.devices (
    device_id     integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    timezone      text NOT NULL,
    clock         text NOT NULL DEFAULT 'utc' CHECK (clock IN ('utc', 'local')),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bookhelper.book_keys (
    book_id       integer PRIMARY KEY REFERENCES public.books ON DELETE CASCADE ON UPDATE CASCADE,
    book_key      text NOT NULL UNIQUE,
    created_book  boolean NOT NULL,
    matched_by    text NOT NULL,
    title         text,
    series        text,
    language      text,
    last_open_at  timestamptz,
    metadata_hash text,
    author_id     integer,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bookhelper.author_names (
    author_id integer NOT NULL REFERENCES public.authors ON DELETE CASCADE,
    name      text NOT NULL,
    created   boolean NOT NULL
);
-- Unique on a digest: a btree entry cannot hold a name of several kilobytes.
CREATE UNIQUE INDEX IF NOT EXISTS author_names_name_md5 ON bookhelper.author_names (md5(name));
CREATE TABLE IF NOT EXISTS bookhelper.book_authors (
    book_id   integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    author_id integer NOT NULL REFERENCES public.authors ON DELETE CASCADE,
    position  smallint NOT NULL,
    PRIMARY KEY (book_id, position)
);
CREATE INDEX IF NOT EXISTS book_authors_author ON bookhelper.book_authors (author_id);
-- A Calibre library (current state): the Calibre book each warehouse book is matched to and how,
-- what Calibre says of it, its tags and identifiers; the values the job wrote into the reader's shared
-- columns (so that it only ever replaces its own); and the reader's own corrections of the match.
CREATE TABLE IF NOT EXISTS bookhelper.calibre_match_overrides (
    book_id    integer PRIMARY KEY REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    calibre_id integer,
    note       text
);
CREATE TABLE IF NOT EXISTS bookhelper.book_calibre (
    book_id        integer PRIMARY KEY REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    calibre_id     integer NOT NULL,
    calibre_uuid   text,
    match_rule     text NOT NULL,
    title          text,
    series         text,
    series_index   double precision,
    languages      text[] NOT NULL DEFAULT '{}',
    rating         smallint CHECK (rating BETWEEN 1 AND 5),
    status         text,
    published_on   date,
    publisher      text,
    isbn           text
);
CREATE TABLE IF NOT EXISTS bookhelper.shared_values (
    book_id        integer PRIMARY KEY REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    isbn_13        text,
    isbn_10        text,
    publisher_id   integer,
    publisher_name text
);
CREATE TABLE IF NOT EXISTS bookhelper.created_publishers (
    publisher_id integer PRIMARY KEY REFERENCES public.publishers ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS bookhelper.tags (
    tag_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name   text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS tags_name_md5 ON bookhelper.tags (md5(name));
CREATE TABLE IF NOT EXISTS bookhelper.book_tags (
    book_id integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    tag_id  integer NOT NULL REFERENCES bookhelper.tags,
    source  text NOT NULL,
    PRIMARY KEY (book_id, tag_id, source)
);
CREATE TABLE IF NOT EXISTS bookhelper.book_identifiers (
    book_id integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    source  text NOT NULL,
    scheme  text NOT NULL,
    value   text NOT NULL,
    PRIMARY KEY (book_id, source, scheme, value)
);
CREATE TABLE IF NOT EXISTS bookhelper.page_views (
    book_id     integer NOT NULL,
    page        integer NOT NULL,
    start_epoch bigint NOT NULL,
    duration    integer NOT NULL,
    total_pages integer NOT NULL,
    device_id   integer NOT NULL,
    PRIMARY KEY (book_id, page, start_epoch)
);
-- A book's page views follow its identity, deleted or renumbered, as ON DELETE / ON UPDATE CASCADE would take
-- them. Not a foreign key: one checks every inserted row against book_keys (4.5 s of a 1.3M-row first load on
-- PostgreSQL 15); the job writes page views only of the books it has just written.
CREATE OR REPLACE FUNCTION bookhelper.page_views_follow_book() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM bookhelper.page_views WHERE book_id = OLD.book_id;
    ELSIF NEW.book_id IS DISTINCT FROM OLD.book_id THEN
        UPDATE bookhelper.page_views SET book_id = NEW.book_id WHERE book_id = OLD.book_id;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER page_views_follow_book AFTER DELETE OR UPDATE OF book_id ON bookhelper.book_keys
    FOR EACH ROW EXECUTE FUNCTION bookhelper.page_views_follow_book();
CREATE TABLE IF NOT EXISTS bookhelper.device_book_ids (
    device_id integer NOT NULL REFERENCES bookhelper.devices,
    id_book   bigint NOT NULL,
    book_id   integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    book_key  text NOT NULL,
    PRIMARY KEY (device_id, id_book)
);
CREATE TABLE IF NOT EXISTS bookhelper.device_books (
    device_id        integer NOT NULL REFERENCES bookhelper.devices,
    book_id          integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    row_count        bigint NOT NULL,
    duration_sum     bigint NOT NULL,
    last_start_epoch bigint NOT NULL,
    future_rows      bigint NOT NULL,
    metadata_hash    text NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, book_id)
);
-- KOReader's sidecars (current state per device): the fingerprint of each file, what each says of its
-- book, and its highlights, notes and page bookmarks.
CREATE TABLE IF NOT EXISTS bookhelper.sidecar_files (
    device_id    integer NOT NULL REFERENCES bookhelper.devices,
    sidecar_path text NOT NULL,
    content_hash text NOT NULL,
    book_id      integer REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, sidecar_path)
);
CREATE TABLE IF NOT EXISTS bookhelper.book_sidecars (
    device_id        integer NOT NULL REFERENCES bookhelper.devices,
    book_id          integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    sidecar_path     text NOT NULL,
    status           text NOT NULL,
    status_modified  date,
    rating           smallint CHECK (rating BETWEEN 1 AND 5),
    review           text,
    percent_finished double precision CHECK (percent_finished BETWEEN 0 AND 1),
    doc_pages        integer,
    last_opened_at   timestamptz,
    identifiers      text[] NOT NULL DEFAULT '{}',
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, book_id)
);
CREATE TABLE IF NOT EXISTS bookhelper.highlights (
    device_id     integer NOT NULL REFERENCES bookhelper.devices,
    book_id       integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    position      integer NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('highlight', 'note', 'bookmark')),
    text          text,
    note          text,
    chapter       text,
    page          integer,
    pageref       text,
    pos0          text,
    pos1          text,
    color         text,
    drawer        text,
    created_local timestamp,
    updated_local timestamp,
    created_at    timestamptz,
    updated_at    timestamptz,
    PRIMARY KEY (device_id, book_id, position)
);
CREATE TABLE IF NOT EXISTS bookhelper.etl_runs (
    run_id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_uuid           uuid NOT NULL,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz NOT NULL,
    status             text NOT NULL,
    source             text NOT NULL DEFAULT 'koreader',
    device             text NOT NULL,
    source_file        text,
    rows_read          bigint,
    rows_skipped       bigint,
    skipped_by_reason  jsonb,
    books_changed      integer,
    books_inserted     integer,
    books_updated      integer,
    page_rows_sent     bigint,
    page_rows_inserted bigint,
    page_rows_updated  bigint,
    sessions_inserted  integer,
    sessions_updated   integer,
    sessions_unchanged integer,
    sessions_removed   integer,
    error_message      text,
    script_version     text NOT NULL,
    exit_code          integer,
    source_newest_at   timestamptz,
    source_modified_at timestamptz,
    notes              text
);
CREATE TABLE IF NOT EXISTS bookhelper.device_sync (
    source             text NOT NULL,
    device             text NOT NULL,
    last_success_at    timestamptz,
    last_run_at        timestamptz NOT NULL,
    last_status        text NOT NULL,
    last_error         text,
    rows_read          bigint,
    rows_skipped       bigint,
    books_changed      integer,
    sessions_inserted  integer,
    sessions_updated   integer,
    sessions_unchanged integer,
    last_exit_code     integer,
    source_newest_at   timestamptz,
    source_modified_at timestamptz,
    PRIMARY KEY (source, device)
);

-- Amazon's exports (current state: each run with an export configured replaces what it holds). Kindle's
-- reading intervals, each once; Audible's listening days (one row per profile, audiobook and local day, the
-- day's exact milliseconds; the export gives dates, not times) with each day's read, and the audiobooks'
-- metadata with the value the job wrote into books.audio_seconds (so that it only ever replaces its own).
CREATE TABLE IF NOT EXISTS bookhelper.kindle_intervals (
    content_id text NOT NULL,
    start_time timestamp NOT NULL,
    serial     text NOT NULL,
    end_time   timestamp NOT NULL,
    millis     bigint NOT NULL,
    page_flips integer,
    kind       text NOT NULL CHECK (kind IN ('book', 'document')),
    device     text NOT NULL,
    PRIMARY KEY (content_id, start_time, serial)
);
CREATE TABLE IF NOT EXISTS bookhelper.audible_days (
    book_id          integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    profile          text NOT NULL,
    day              date NOT NULL,
    asins            text[] NOT NULL,
    timezone         text NOT NULL,
    device           text NOT NULL,
    start_time       timestamp NOT NULL,
    end_time         timestamp NOT NULL,
    listening_ms     bigint NOT NULL,
    duration_seconds integer NOT NULL,
    events           integer NOT NULL,
    first_position_ms bigint,
    last_position_ms bigint,
    book_length_ms   bigint,
    reaches_end      boolean NOT NULL,
    read_number      integer NOT NULL,
    read_instance_id uuid NOT NULL,
    PRIMARY KEY (book_id, profile, day)
);
CREATE TABLE IF NOT EXISTS bookhelper.audible_books (
    book_id              integer PRIMARY KEY REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    asins                text[] NOT NULL,
    title                text,
    narrators            text[] NOT NULL DEFAULT '{}',
    length_seconds       integer,
    matched_by           text NOT NULL,
    written_audio_seconds integer
);
-- The Kindle sessions that finish a read, by Amazon's completion records (Kindle.UserUniqueTitlesCompleted.csv):
-- current state, as the configured export says.
CREATE TABLE IF NOT EXISTS bookhelper.kindle_finishes (
    book_id      integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    start_time   timestamp NOT NULL,
    device       text NOT NULL,
    completed_on date NOT NULL,
    PRIMARY KEY (book_id, start_time, device)
);
-- The finishes known only by Amazon's completion records (a book marked as read with no Kindle reading by
-- then: read elsewhere, or before the export's reading began): current state, as the configured export says.
CREATE TABLE IF NOT EXISTS bookhelper.kindle_marks (
    book_id      integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    completed_on date NOT NULL,
    PRIMARY KEY (book_id, completed_on)
);
-- The reader's own decision of which book an export's title is (an audiobook's ebook, say); book_id NULL:
-- a book of its own.
CREATE TABLE IF NOT EXISTS bookhelper.export_match_overrides (
    source  text NOT NULL CHECK (source IN ('kindle', 'audible')),
    asin    text NOT NULL,
    book_id integer REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    note    text,
    PRIMARY KEY (source, asin)
);
-- What the Calibre library last read says of the ASINs its books hold (every book of the library, matched or
-- not), as current state: how an export's book that no warehouse book holds gets a title and authors when the
-- export names none.
CREATE TABLE IF NOT EXISTS bookhelper.calibre_asins (
    asin       text NOT NULL,
    rule       text NOT NULL,
    calibre_id integer NOT NULL,
    title      text NOT NULL,
    authors    text[] NOT NULL,
    PRIMARY KEY (asin, rule, calibre_id)
);

-- Exact seconds per book, with what the sidecars and Calibre say of it.
CREATE OR REPLACE VIEW bookhelper.book_reading AS
SELECT b.book_id, b.title,
       (SELECT string_agg(a.name, '; ' ORDER BY ba.position)
          FROM bookhelper.book_authors ba JOIN bookhelper.author_names a USING (author_id)
         WHERE ba.book_id = b.book_id) AS authors,
       b.file_hash, b.page_count,
       coalesce(k.language, (SELECT c.languages[1] FROM bookhelper.book_calibre c WHERE c.book_id = b.book_id))
           AS language,
       coalesce(k.series, (SELECT c.series || coalesce(' #' || trim_scale(c.series_index::numeric)::text, '')
                           FROM bookhelper.book_calibre c WHERE c.book_id = b.book_id)) AS series,
       count(s.session_id) AS sessions,
       coalesce(sum(s.duration_seconds), 0) AS reading_seconds,
       round(coalesce(sum(s.duration_seconds), 0) / 3600.0, 2) AS reading_hours,
       min(s.start_time) AT TIME ZONE 'UTC' AS first_read_at,
       max(s.end_time) AT TIME ZONE 'UTC' AS last_read_at,
       coalesce(max(s.read_number), 0) AS reads,
       count(DISTINCT s.device) AS devices,
       coalesce((SELECT bs.status FROM bookhelper.book_sidecars bs WHERE bs.book_id = b.book_id
                 ORDER BY bs.last_opened_at DESC NULLS LAST, bs.device_id LIMIT 1),
                (SELECT c.status FROM bookhelper.book_calibre c WHERE c.book_id = b.book_id)) AS status,
       coalesce((SELECT bs.rating FROM bookhelper.book_sidecars bs WHERE bs.book_id = b.book_id
                 ORDER BY bs.last_opened_at DESC NULLS LAST, bs.device_id LIMIT 1),
                (SELECT c.rating FROM bookhelper.book_calibre c WHERE c.book_id = b.book_id)) AS rating,
       (SELECT count(*) FROM bookhelper.highlights h WHERE h.book_id = b.book_id AND h.kind <> 'bookmark')
           AS highlights,
       (SELECT e.publisher_specific FROM public.book_editions e
        WHERE e.book_id = b.book_id AND e.calibre_id IS NOT NULL AND e.publisher_specific IS NOT NULL
        ORDER BY e.edition_id LIMIT 1) AS publisher,
       (SELECT array_agg(DISTINCT g.name ORDER BY g.name) FROM bookhelper.book_tags bt
        JOIN bookhelper.tags g USING (tag_id) WHERE bt.book_id = b.book_id) AS tags
FROM public.books b
JOIN bookhelper.book_keys k USING (book_id)
LEFT JOIN public.reading_sessions s ON s.book_id = b.book_id AND s.data_source IN """ + OUR_SOURCES + """
GROUP BY b.book_id, k.book_id;

-- One row per finish: every read (read_number) that reached the end, and the sidecar's "complete"
-- status, reconciled: a status set during a read that reached the end is that read's finish, not a
-- second one; a "complete" with no such read (finished on paper, say) is a finish of its own.
CREATE OR REPLACE VIEW bookhelper.finished_books AS
WITH read_rows AS (
    SELECT s.book_id, s.read_instance_id, s.read_number, s.start_time, s.end_time,
           (""" + REACHES_END_SQL + """) OR f.book_id IS NOT NULL AS reached_end, s.media_type,
           s.data_source = 'kindle' AS kindle,
           -- a Kindle read ends with the session its completion record finishes, on the record's day
           CASE WHEN s.data_source <> 'kindle' OR f.book_id IS NOT NULL THEN s.end_time END AS finish_end,
           f.completed_on
    FROM public.reading_sessions s
    -- a Kindle read reaches the end by Amazon's completion record (the export has no positions)
    LEFT JOIN bookhelper.kindle_finishes f
      ON s.data_source = 'kindle' AND (f.book_id, f.start_time, f.device) = (s.book_id, s.start_time, s.device)
    WHERE s.data_source IN ('koreader', 'kindle')
    UNION ALL
    -- an audiobook day reaches the end by its positions, and ends on its last second (not the next midnight)
    SELECT s.book_id, s.read_instance_id, s.read_number, a.start_time, a.end_time - interval '1 second',
           a.reaches_end, s.media_type, false, a.end_time - interval '1 second', NULL
    FROM bookhelper.audible_days a JOIN public.reading_sessions s
      ON s.data_source = 'audible' AND (s.book_id, s.start_time, s.device) = (a.book_id, a.start_time, a.device)
), reads AS (
    SELECT book_id, min(read_number) AS read_number, min(start_time) AT TIME ZONE 'UTC' AS started_at,
           max(finish_end) AT TIME ZONE 'UTC' AS finished_at, bool_or(reached_end) AS reached_end,
           string_agg(DISTINCT media_type, ', ' ORDER BY media_type) FILTER (WHERE reached_end) AS formats,
           max(finish_end) FILTER (WHERE NOT kindle) AT TIME ZONE 'UTC' AS other_end,
           max(completed_on) AS completed_on,
           lead(min(start_time) AT TIME ZONE 'UTC') OVER (PARTITION BY book_id ORDER BY min(start_time))
               AS next_read_at
    FROM read_rows
    GROUP BY book_id, read_instance_id
), marked AS (
    SELECT DISTINCT ON (book_id) book_id, status_modified
    FROM bookhelper.book_sidecars WHERE status = 'complete'
    ORDER BY book_id, last_opened_at DESC NULLS LAST, device_id
), finishes AS (
    -- a read of several sources (a tandem) finishes with the last of them; the status date stands for the
    -- reading of the others
    SELECT r.book_id, r.read_number, r.finished_at, r.formats, r.started_at, r.next_read_at,
           greatest(r.completed_on, coalesce(m.status_modified, r.other_end::date)) AS finished_on,
           m.status_modified AS marked_complete_on,
           CASE WHEN m.book_id IS NULL THEN 'reading' ELSE 'reading and status' END AS evidence
    FROM reads r
    LEFT JOIN marked m ON m.book_id = r.book_id
     AND (m.status_modified IS NULL OR m.status_modified >= r.started_at::date)
     AND (r.next_read_at IS NULL OR m.status_modified < r.next_read_at::date)
    WHERE r.reached_end
)
SELECT f.book_id, b.title, f.read_number, f.finished_at, f.finished_on, f.evidence, f.formats
FROM finishes f JOIN public.books b USING (book_id)
UNION ALL
SELECT m.book_id, b.title, NULL, NULL, m.status_modified, 'status', NULL
FROM marked m JOIN public.books b USING (book_id)
WHERE NOT EXISTS (SELECT 1 FROM finishes f WHERE f.book_id = m.book_id AND f.marked_complete_on IS NOT NULL)
UNION ALL
-- a book Amazon's records say was finished with no Kindle reading by then: a finish of its own, unless it falls
-- in another read of the book that reached the end, or within a day of its complete status (the same finish)
SELECT k.book_id, b.title, NULL, NULL, k.completed_on, 'completion record', NULL
FROM bookhelper.kindle_marks k JOIN public.books b USING (book_id)
WHERE NOT EXISTS (SELECT 1 FROM finishes f WHERE f.book_id = k.book_id AND k.completed_on >= f.started_at::date
                    AND (f.next_read_at IS NULL OR k.completed_on < f.next_read_at::date))
  AND NOT EXISTS (SELECT 1 FROM marked m WHERE m.book_id = k.book_id
                    AND abs(m.status_modified - k.completed_on) <= """ + str(SAME_FINISH_DAYS) + """);

-- The one rendering of the device clock rule: a row's true UTC start and its device's zone.
CREATE OR REPLACE VIEW bookhelper.page_view_times AS
SELECT p.book_id, p.page, p.start_epoch, p.duration, p.total_pages, p.device_id,
       CASE WHEN d.clock = 'local'
            THEN extract(epoch FROM (to_timestamp(p.start_epoch) AT TIME ZONE 'UTC') AT TIME ZONE d.timezone)::bigint
            ELSE p.start_epoch END AS utc_epoch,
       d.timezone
FROM bookhelper.page_views p JOIN bookhelper.devices d USING (device_id);

-- Reading per local day, from every source of the job: KOReader's page views in their device's zone, Kindle's
-- sessions in the zone of the run that loaded them, Audible's listening days as the export dates them.
CREATE OR REPLACE VIEW bookhelper.reading_days AS
WITH parts AS (
    SELECT (to_timestamp(p.utc_epoch) AT TIME ZONE p.timezone)::date AS day, p.duration AS seconds, p.book_id,
           1 AS page_views, 'ebook' AS media_type
    FROM bookhelper.page_view_times p
    UNION ALL
    SELECT ((s.start_time AT TIME ZONE 'UTC') AT TIME ZONE z.value)::date, s.duration_seconds, s.book_id, 0,
           'ebook'
    FROM public.reading_sessions s JOIN bookhelper.schema_meta z ON z.key = 'kindle_timezone'
    WHERE s.data_source = 'kindle'
    UNION ALL
    SELECT a.day, a.duration_seconds, a.book_id, 0, 'audiobook' FROM bookhelper.audible_days a
)
SELECT day, sum(seconds) AS reading_seconds, round(sum(seconds) / 60.0, 1) AS reading_minutes,
       count(DISTINCT book_id) AS books, sum(page_views) AS page_views,
       coalesce(sum(seconds) FILTER (WHERE media_type = 'ebook'), 0) AS ebook_seconds,
       coalesce(sum(seconds) FILTER (WHERE media_type = 'audiobook'), 0) AS audiobook_seconds
FROM parts
GROUP BY 1;

CREATE OR REPLACE VIEW bookhelper.reading_streaks AS
SELECT min(day) AS first_day, max(day) AS last_day, count(*) AS days, sum(reading_seconds) AS reading_seconds
FROM (SELECT day, reading_seconds, day - (row_number() OVER (ORDER BY day))::integer AS streak
      FROM bookhelper.reading_days) AS days
GROUP BY streak;

CREATE OR REPLACE VIEW bookhelper.author_reading AS
SELECT a.author_id, a.name,
       count(DISTINCT ba.book_id) AS books,
       count(s.session_id) AS sessions,
       coalesce(sum(s.duration_seconds), 0) AS reading_seconds,
       round(coalesce(sum(s.duration_seconds), 0) / 3600.0, 2) AS reading_hours,
       min(s.start_time) AT TIME ZONE 'UTC' AS first_read_at,
       max(s.end_time) AT TIME ZONE 'UTC' AS last_read_at
FROM bookhelper.author_names a
JOIN bookhelper.book_authors ba USING (author_id)
LEFT JOIN public.reading_sessions s ON s.book_id = ba.book_id AND s.data_source IN """ + OUR_SOURCES + """
GROUP BY a.author_id, a.name;

CREATE OR REPLACE VIEW bookhelper.publisher_reading AS
SELECT pb.publisher AS name,
       count(DISTINCT pb.book_id) AS books,
       count(s.session_id) AS sessions,
       coalesce(sum(s.duration_seconds), 0) AS reading_seconds,
       round(coalesce(sum(s.duration_seconds), 0) / 3600.0, 2) AS reading_hours
FROM (SELECT DISTINCT publisher, book_id FROM bookhelper.book_calibre WHERE publisher IS NOT NULL) pb
LEFT JOIN public.reading_sessions s ON s.book_id = pb.book_id AND s.data_source IN """ + OUR_SOURCES + """
GROUP BY pb.publisher;

CREATE OR REPLACE VIEW bookhelper.tag_analytics AS
SELECT g.tag_id, g.name AS tag,
       count(DISTINCT bt.book_id) AS books,
       count(s.session_id) AS sessions,
       coalesce(sum(s.duration_seconds), 0) AS reading_seconds,
       round(coalesce(sum(s.duration_seconds), 0) / 3600.0, 2) AS reading_hours,
       min(s.start_time) AT TIME ZONE 'UTC' AS first_read_at,
       max(s.end_time) AT TIME ZONE 'UTC' AS last_read_at
FROM bookhelper.tags g
JOIN (SELECT DISTINCT tag_id, book_id FROM bookhelper.book_tags) bt USING (tag_id)
LEFT JOIN public.reading_sessions s ON s.book_id = bt.book_id AND s.data_source IN """ + OUR_SOURCES + """
GROUP BY g.tag_id;
"""


# Derived from the DDL, never kept by hand: the relations each creates, by name (the report imports
# them), and the job's views, which an upgrade drops and creates again.
RELATIONS = {name.split(".")[1]: name for name in re.findall(
    r"CREATE (?:TABLE IF NOT EXISTS|OR REPLACE VIEW|VIEW) ((?:public|bookhelper)\.\w+)",
    READER_SCHEMA_DDL + SCHEMA_DDL)}
VIEWS = tuple(re.findall(r"CREATE OR REPLACE VIEW (bookhelper\.\w+)", SCHEMA_DDL))
# Views a release before 3.0.0 created in the reader's schema.
LEGACY_VIEWS = ("public.tag_analytics", "public.finished_books", "public.tandem_reading_sessions",
                "public.publisher_analytics", "public.author_analytics", "public.reading_streaks",
                "public.reading_timeline", "public.page_view_times", "public.book_stats")


def views_dropped(found: "WarehouseState") -> str:
    """The statement that drops, before an upgrade, every view of the job's that reads what the migrations
    change; the DDL creates them again. One statement drops them together, so their order does not matter."""
    views = (LEGACY_VIEWS if found.legacy_schema else ()) + (VIEWS if found.own_schema else ())
    return f"DROP VIEW IF EXISTS {', '.join(views)};\n" if views else ""


# The job's tables of 2.0.0 that keep their name, moved into the job's own schema.
MOVED_TABLES = ("schema_meta", "devices", "book_authors", "calibre_match_overrides", "book_calibre", "tags",
                "book_tags", "book_identifiers", "page_views", "device_book_ids", "device_books", "sidecar_files",
                "book_sidecars", "highlights", "etl_runs")


# Foreign keys to the job's identity of a book, as CREATE TABLE names them: re-pointed by the 2.0.0 upgrade.
BOOK_KEY_REFERENCES = ("page_views", "book_authors", "calibre_match_overrides", "book_calibre", "book_tags",
                       "book_identifiers", "device_book_ids", "device_books", "sidecar_files", "book_sidecars",
                       "highlights")


def v1_local_instant(epoch: str, zone: str) -> str:
    """1.0.0's reading of a local-clock device's raw epoch, as it stored it: the wall time in ``zone``, as a UTC
    epoch. A wall time the zone skips at a spring-forward is read with the offset before the change, so two
    raw epochs (02:10, which Berlin skips, and 03:10) became one instant."""
    return f"extract(epoch FROM (to_timestamp({epoch}) AT TIME ZONE 'UTC') AT TIME ZONE {zone})::bigint"


def local_wall(epoch: str, zone: str) -> str:
    """The wall time in ``zone`` of a UTC epoch, as a local clock records it: an epoch counted as if UTC."""
    return f"extract(epoch FROM (to_timestamp({epoch}) AT TIME ZONE {zone}) AT TIME ZONE 'UTC')::bigint"


# The raw epochs that 1.0.0 can have stored as the instant p.start_epoch of a local-clock device: the wall
# time of the instant under the offset in force then, 3 h before and 25 h before (every real gap is shorter:
# an hour in most zones, 30 min or 2 h in some, a whole day in Samoa in 2011), each one only if 1.0.0's
# reading of it gives the instant back. One: that is the raw epoch. Two: the instant follows a spring-forward
# and either is possible. None: an instant 1.0.0 cannot have stored in the device's stored zone (the zone
# was another when the row was loaded).
V1_RAW_CANDIDATES = f"""
SELECT count(DISTINCT c.raw_epoch) AS candidates, min(c.raw_epoch) AS raw_epoch
FROM (SELECT {local_wall('p.start_epoch - k', 'd.timezone')} + k AS raw_epoch
      FROM unnest('{{0, 10800, 90000}}'::bigint[]) AS k) AS c
WHERE {v1_local_instant('c.raw_epoch', 'd.timezone')} = p.start_epoch"""


# Upgrades of a warehouse made by an older release, by the version they start from: (before, after) the
# schema DDL, inside the run's transaction; none loses history but the one case 1.0.0 already lost (1: below).
MIGRATIONS = {
    # 6 -> 7: completion records a day apart are one finish, a Kindle read finishes on its record's day, a
    # record with no reading by then is a finish of its own (finished_books, kindle_marks, in the DDL): the
    # export is read again.
    6: ("", "DELETE FROM bookhelper.schema_meta WHERE key = 'kindle_fingerprint';\n"),
    # 5 -> 6: bookhelper.calibre_asins and kindle_finishes (in the DDL), filled by the next loads of the Calibre
    # library and the Kindle export.
    5: ("", "DELETE FROM bookhelper.schema_meta WHERE key IN ('calibre_fingerprint', 'kindle_fingerprint');\n"),
    # 4 -> 5: page_views follow book_keys by a trigger (in the DDL) instead of a foreign key.
    4: ("", "ALTER TABLE bookhelper.page_views DROP CONSTRAINT IF EXISTS page_views_book_id_fkey;\n"),
    # 3.0.0 -> 4: Amazon's exports: their tables, reading_sessions.time_precision (all in the DDL) and the
    # views that count every source of the job.
    3: ("", ""),
    # 1.0.0 -> 2: device ids as integer; authors unique by a digest; page views keyed on the raw KOReader
    # start_time: rows of local-clock devices were stored converted to UTC, so they are converted back,
    # exactly. Where 1.0.0 gave two raw epochs one instant (the hour after a spring-forward; it even kept one
    # row of two views of a page), the raw epoch is lost: such a row is dropped, and the device's file, which
    # every device sends again whole, brings it back with its raw epoch (a row no file holds any more is
    # lost). Every device sends all its books once more, so that its KOReader book ids get recorded; and all
    # sessions are derived again under the device-independent rule. A row 1.0.0 cannot have stored in the
    # device's stored zone is read back in that zone, as before.
    1: ("""
ALTER TABLE devices ALTER COLUMN device_id TYPE integer;
ALTER TABLE page_views ALTER COLUMN device_id TYPE integer;
ALTER TABLE device_books ALTER COLUMN device_id TYPE integer;
ALTER TABLE authors DROP CONSTRAINT IF EXISTS authors_name_key;
ALTER TABLE publishers DROP CONSTRAINT IF EXISTS publishers_name_key;
ALTER TABLE books ADD COLUMN IF NOT EXISTS metadata_hash text;
ALTER TABLE etl_runs ADD COLUMN IF NOT EXISTS exit_code integer,
    ADD COLUMN IF NOT EXISTS source_newest_at timestamptz, ADD COLUMN IF NOT EXISTS source_modified_at timestamptz,
    ADD COLUMN IF NOT EXISTS notes text;
ALTER TABLE sync_status ADD COLUMN IF NOT EXISTS last_exit_code integer,
    ADD COLUMN IF NOT EXISTS source_newest_at timestamptz, ADD COLUMN IF NOT EXISTS source_modified_at timestamptz;
CREATE TEMP TABLE raw_local_views ON COMMIT DROP AS
SELECT p.book_id, p.page,
       CASE WHEN r.candidates = 1 THEN r.raw_epoch ELSE """ + local_wall("p.start_epoch", "d.timezone") + """ END
           AS raw_epoch,
       p.duration, p.total_pages, p.device_id
FROM page_views p JOIN devices d USING (device_id) CROSS JOIN LATERAL (""" + V1_RAW_CANDIDATES + """) AS r
WHERE d.clock = 'local' AND r.candidates <= 1;
DELETE FROM page_views p USING devices d WHERE d.device_id = p.device_id AND d.clock = 'local';
""" + merge_page_views("book_id, page, raw_epoch, duration, total_pages, device_id", "raw_local_views") + """;
DELETE FROM device_books;
""", ""),
    # 2.0.0 -> 3: the reader's warehouse is the contract. The job's tables move to schema bookhelper;
    # its books, authors and sessions move into the reader's tables with the same ids (text cut to the
    # reader's lengths until each device sends its books again, which the emptied fingerprints make it
    # do); sessions are derived again into the reader's reading_sessions; Calibre's editions and shared
    # values are written again on the next run that reads the library.
    2: ("""
CREATE SCHEMA IF NOT EXISTS bookhelper;
""" + "".join(f"ALTER TABLE IF EXISTS public.{table} SET SCHEMA bookhelper;\n" for table in MOVED_TABLES) + """
ALTER TABLE IF EXISTS public.sync_status RENAME TO device_sync;
ALTER TABLE IF EXISTS public.device_sync RENAME CONSTRAINT sync_status_pkey TO device_sync_pkey;
ALTER TABLE IF EXISTS public.device_sync SET SCHEMA bookhelper;
ALTER TABLE public.books RENAME TO legacy_books;
ALTER TABLE public.legacy_books SET SCHEMA bookhelper;
ALTER TABLE public.authors RENAME TO legacy_authors;
ALTER TABLE public.legacy_authors SET SCHEMA bookhelper;
ALTER TABLE public.reading_sessions RENAME TO legacy_sessions;
ALTER TABLE public.legacy_sessions SET SCHEMA bookhelper;
DROP TABLE IF EXISTS public.book_editions, public.publishers CASCADE;
ALTER TABLE IF EXISTS bookhelper.book_calibre ADD COLUMN IF NOT EXISTS publisher text,
    ADD COLUMN IF NOT EXISTS isbn text;
""", """
INSERT INTO public.authors (author_id, author_name) SELECT author_id, left(name, 255) FROM bookhelper.legacy_authors;
SELECT setval(pg_get_serial_sequence('public.authors', 'author_id'), coalesce(max(author_id), 0) + 1, false)
FROM public.authors;
INSERT INTO bookhelper.author_names (author_id, name, created) SELECT author_id, name, true
FROM bookhelper.legacy_authors;
INSERT INTO public.books (book_id, title, author, author_id, file_hash, page_count, source, device_stats_source)
SELECT b.book_id, coalesce(left(b.title, 255), %(untitled)s),
       (SELECT left(a.name, 255) FROM bookhelper.legacy_authors a WHERE a.author_id = b.author_id), b.author_id,
       b.file_hash, b.page_count, 'koreader', %(stats_source)s
FROM bookhelper.legacy_books b;
SELECT setval(pg_get_serial_sequence('public.books', 'book_id'), coalesce(max(book_id), 0) + 1, false)
FROM public.books;
INSERT INTO bookhelper.book_keys (book_id, book_key, created_book, matched_by, title, series, language, author_id)
SELECT book_id, book_key, true, 'created', title, series, language, author_id FROM bookhelper.legacy_books;
DROP TABLE bookhelper.legacy_sessions, bookhelper.legacy_books, bookhelper.legacy_authors CASCADE;
DELETE FROM bookhelper.page_views p WHERE NOT EXISTS (SELECT 1 FROM bookhelper.book_keys k WHERE k.book_id = p.book_id);
""" + "".join(f"ALTER TABLE bookhelper.{table} DROP CONSTRAINT IF EXISTS {table}_book_id_fkey, ADD CONSTRAINT "
              f"{table}_book_id_fkey FOREIGN KEY (book_id) REFERENCES bookhelper.book_keys ON DELETE CASCADE "
              "ON UPDATE CASCADE;\n" for table in BOOK_KEY_REFERENCES) + """
ALTER TABLE bookhelper.book_authors DROP CONSTRAINT IF EXISTS book_authors_author_id_fkey,
    ADD CONSTRAINT book_authors_author_id_fkey FOREIGN KEY (author_id) REFERENCES public.authors ON DELETE CASCADE;
DELETE FROM bookhelper.device_books;
DELETE FROM bookhelper.schema_meta WHERE key = 'calibre_fingerprint';
INSERT INTO bookhelper.schema_meta (key, value) VALUES ('session_gap_seconds', 'unknown')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
"""),
}


# The warehouse's version, and the run's settings: UTC, whatever the database's TimeZone (the reader's
# TIMESTAMP columns hold naive UTC, and their start_time CHECK compares in the session's zone), and the
# job's schema beside the reader's.
SESSION_SETTINGS_SQL = """
SELECT set_config('TimeZone', 'UTC', true);
SELECT set_config('search_path', 'bookhelper, ' || current_setting('search_path'), true);
"""


VERSION_SQL = """
INSERT INTO bookhelper.schema_meta (key, value) VALUES ('schema_version', %(version)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
"""


@dataclass(frozen=True)
class WarehouseState:
    """What a run finds when it opens the warehouse: the job's schema, an older release's, the reader's."""

    own_schema: bool
    legacy_schema: bool
    reader_sessions: bool


def ensure_schema(cursor, config, found: WarehouseState) -> None:
    """Create what is missing, once, around the reader's objects; upgrade an older release's warehouse;
    refuse one made by a newer release."""
    if found.own_schema or found.legacy_schema:
        cursor.execute(f"SELECT value FROM {'bookhelper' if found.own_schema else 'public'}.schema_meta"
                       " WHERE key = 'schema_version'")
        row = cursor.fetchone()
        version = int(row[0]) if row else (SCHEMA_VERSION if found.own_schema else 1)
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the warehouse has schema version {version}, newer than this script's {SCHEMA_VERSION}; "
                "upgrade bookhelper-etl"
            )
        if version == SCHEMA_VERSION:
            return
    else:
        version = SCHEMA_VERSION
        if found.reader_sessions:
            take_over_koreader_sessions(cursor, config)
    component_logger("DB").info("creating or upgrading the warehouse schema to version %d", SCHEMA_VERSION)
    steps = range(version, SCHEMA_VERSION)
    before = views_dropped(found) + "".join(MIGRATIONS[step][0] for step in steps) + READER_SCHEMA_DDL + SCHEMA_DDL
    after = "".join(MIGRATIONS[step][1] for step in steps)
    cursor.execute(before.replace("%", "%%") + after + VERSION_SQL,
                   {"version": str(SCHEMA_VERSION), "untitled": UNTITLED, "stats_source": STATS_SOURCE})


def take_over_koreader_sessions(cursor, config) -> None:
    """On the first run into the reader's warehouse: KOReader sessions another loader wrote are never
    doubled by ours nor silently deleted. The run refuses, unless the reader asked to replace them."""
    cursor.execute("SELECT count(*) FROM public.reading_sessions WHERE data_source = 'koreader'")
    (sessions,) = cursor.fetchone()
    if not sessions:
        return
    if not config.replace_koreader_sessions:
        raise ConfigError(
            f"the warehouse holds {sessions} KOReader sessions that bookhelper-etl did not derive (an earlier "
            "loader's); run once with --replace-koreader-sessions to replace them with the sessions of the "
            "statistics files (docs/schema.md)"
        )
    cursor.execute("DELETE FROM public.reading_sessions WHERE data_source = 'koreader'")
    component_logger("LOAD").warning(
        "replacing %d KOReader sessions of an earlier loader with the sessions of the statistics files", sessions)


def schema_is_current(cursor) -> bool:
    """Whether the warehouse has this release's layout (a failed run records itself only there)."""
    cursor.execute("SELECT to_regclass('bookhelper.schema_meta') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return False
    cursor.execute("SELECT value FROM bookhelper.schema_meta WHERE key = 'schema_version'")
    return cursor.fetchone() == (str(SCHEMA_VERSION),)
