"""Reading sessions: the gap rule that groups page views into sessions, reads (re-reads) and the finish rule."""

import operator
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bookhelper.core import STATS_SOURCE, naive_utc

# Namespace of read_instance_id: uuid3(namespace, "<book_key>/read/<n>"), computable in plain SQL.
READ_NAMESPACE = uuid.UUID("6f0a4a53-5c1e-4b83-9a43-7d1f0c2b9e11")


@dataclass(frozen=True)
class Session:
    """A reading session of one book: page rows with pauses of at most the gap between them."""

    start_time: int
    end_time: int
    duration_seconds: int
    pages_read: int
    start_page: int
    end_page: int
    total_pages: int

    @property
    def duration_minutes(self) -> int:
        """Rounded to the nearest minute, halves up, and at least 1: the reader's column requires it
        (CHECK duration_minutes > 0); the exact time is duration_seconds."""
        return max(1, (self.duration_seconds + 30) // 60)


START_THEN_PAGE = operator.itemgetter(1, 0)


def gap_groups(spans: Sequence[tuple[int, int]], gap: int) -> list[range]:
    """The session rule: sorted (start, end) spans grouped into sessions, as ranges of their indices.

    A span continues the current session when it starts at most ``gap`` after the session's spans ended;
    otherwise it opens a new one. "Ended" is the latest end so far, which is the previous span's end
    whenever spans do not overlap, and keeps sessions from overlapping when several devices' spans do.
    Every source's sessions come from this function (KOReader's page rows, Kindle's intervals).
    """
    groups: list[range] = []
    first, latest_end = 0, None
    for index, (start, end) in enumerate(spans):
        if latest_end is not None and start - latest_end > gap:
            groups.append(range(first, index))
            first, latest_end = index, None
        if latest_end is None or end > latest_end:
            latest_end = end
    if spans:
        groups.append(range(first, len(spans)))
    return groups


def transform_sessions(page_rows: Iterable[tuple], gap_seconds: int) -> list[Session]:
    """Group one book's page rows (page, start_time, duration, total_pages) into sessions.

    Rows are taken in (start_time, page) order and grouped by the session rule (gap_groups), a row's
    span being start_time to start_time + duration.
    """
    rows = sorted(page_rows, key=START_THEN_PAGE)
    sessions = []
    for group in gap_groups([(start, start + duration) for _page, start, duration, _total in rows], gap_seconds):
        members = rows[group.start:group.stop]
        pages = {page for page, _start, _duration, _total in members}
        sessions.append(Session(
            members[0][1], max(start + duration for _page, start, duration, _total in members),
            sum(duration for _page, _start, duration, _total in members), len(pages), members[0][0], max(pages),
            members[-1][3]))
    return sessions


# The finish rule, as shares of the book's pages: a session that reaches END_SHARE of them finishes a read;
# one that starts within BEGINNING_SHARE, after a finish, begins the next read. Python evaluates it here;
# NEAR_BEGINNING_SQL and REACHES_END_SQL are its one rendering in SQL (the property tests hold both equal).
BEGINNING_SHARE = (1, 10)
END_SHARE = (9, 10)
# In bigint: nine times a page count near the integer limit overflows an integer (Python's ints do not).
NEAR_BEGINNING_SQL = (f"total_pages > 0 AND {BEGINNING_SHARE[1]}::bigint * start_page"
                      f" <= {BEGINNING_SHARE[0]}::bigint * total_pages")
REACHES_END_SQL = f"total_pages > 0 AND {END_SHARE[1]}::bigint * end_page >= {END_SHARE[0]}::bigint * total_pages"
# Two marks of a finish at most this many days apart are one finish: Amazon's AUTOMATIC record and the reader's
# MANUAL mark a day later, a day dated in a zone a day off the reader's (the fact sheet names none), or a
# completion record and a sidecar's complete status.
SAME_FINISH_DAYS = 1


def starts_near_beginning(session: Session) -> bool:
    """start_page / total_pages <= 10%, in exact integer arithmetic."""
    numerator, denominator = BEGINNING_SHARE
    return session.total_pages > 0 and denominator * session.start_page <= numerator * session.total_pages


def reaches_end(session: Session) -> bool:
    """end_page / total_pages >= 90%, in exact integer arithmetic."""
    numerator, denominator = END_SHARE
    return session.total_pages > 0 and denominator * session.end_page >= numerator * session.total_pages


def number_reads(sessions: Sequence[Session]) -> list[int]:
    """The read number of each session of one book, in time order.

    A new read begins with a session that starts within the first 10% of the book,
    after an earlier session of the current read reached 90% or more.
    """
    numbers = []
    read, finished = 1, False
    for session in sessions:
        if finished and starts_near_beginning(session):
            read, finished = read + 1, False
        numbers.append(read)
        finished = finished or reaches_end(session)
    return numbers


def read_instance_id(book_key: str, read: int) -> uuid.UUID:
    """A read's id: the same book and read number give the same id on every run and device."""
    return uuid.uuid3(READ_NAMESPACE, f"{book_key}/read/{read}")


def exact_seconds(millis: Sequence[int]) -> list[int]:
    """Whole seconds of each of a book's sessions, given their milliseconds in time order: each session's
    share of the book's running total rounded once (halves up), so that the book's seconds are its exact
    milliseconds rounded once, however many sessions there are."""
    seconds, total, rounded = [], 0, 0
    for amount in millis:
        total += amount
        now_rounded = (total + 500) // 1000
        seconds.append(now_rounded - rounded)
        rounded = now_rounded
    return seconds


def session_copy_lines(book_id: int, book_key: str, rows: list[tuple], gap_seconds: int, device: str,
                       now: int) -> list[str]:
    """One book's sessions and reads, by the Python rule, as COPY lines for reading_sessions; a session that
    would start after ``now`` waits (it comes last, so the reads before it keep their numbers)."""
    sessions = transform_sessions(rows, gap_seconds)
    lines = []
    read_ids: dict[int, uuid.UUID] = {}
    for session, read in zip(sessions, number_reads(sessions)):
        if session.start_time > now:
            break
        if read not in read_ids:
            read_ids[read] = read_instance_id(book_key, read)
        read_id = read_ids[read]
        start, end = (naive_utc(epoch) for epoch in (session.start_time, session.end_time))
        lines.append(
            f"{book_id}\t{start}\t{end}\t{session.duration_seconds}\t{session.duration_minutes}\t"
            f"{session.pages_read}\t{session.start_page}\t{session.end_page}\t{session.total_pages}\t"
            f"{device}\t{read}\t{read_id}\t{STATS_SOURCE}\n"
        )
    return lines
