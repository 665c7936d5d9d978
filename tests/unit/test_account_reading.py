"""Reading account-holder files: the fast line parser gives exactly what the full one gives (or
hands the line to it), and reading the file a block at a time gives the same lines, line numbers
and refusals as reading it line by line."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.models.accounts import AccountHolderProfile
from app.services.accounts import reading
from app.services.accounts.reading import FileRefused, Reader, _decoded

COLUMNS = {"reference": "Ref", "name": "Name", "address1": "A1", "address2": "A2",
           "postcode": "Postcode", "balance": "Balance", "balance_date": "AsAt", "stop": "Stop",
           "stop_message": "StopMsg"}
SPLIT = {"reference": "Ref", "title": "Title", "forename": "Forename", "surname": "Surname",
         "address": "Address", "postcode": "Postcode", "balance": "Balance",
         "stop_message": "StopMsg"}

REFS = ["A1", " A2 ", "", "   ", "X" * 30, "X" * 31, "CT000000001"]
NAMES = ["Mrs Siân Jones", "John  Smith", " Ann\tEvans ", "", "Jones Ltd", "Davies & Sons",
         "O'Brien", "Smith-Jones", "Ap Rhys", "ﬁnn Ltd", "Llewelyn Dr", "Ltd", "A" * 201,
         "Ab Œuvre", "Zoë", "J. R. R.", "Mr X Ashcraft", "Pfister", "Ann Mc\u00a0Kay", "123"]
PARTS = ["", "Mr", "Siân", "Jones", " Ap Rhys ", "O'Neil", "Ltd"]
ADDRESSES = ["", "1 High St", " Newport ", "Heol y Frenhines", "a,b"]
POSTCODES = ["", "np20 1aa", " NP20  1AA ", "CF10 1AAXYZ", "ß1"]
BALANCES = ["", "12", "12.5", "-5.00", "12.345", "£12.50", "1,234.50", "abc", "0",
            "99999999999999", "-0.01", " 7.1 "]
DATES = ["", "31/03/2026", "31/02/2026", "1/3/2026", "2026-03-31", " 29/02/2024 "]
STOPS = ["", "Y", "N", "yes", "0", "COURT", "f", "t"]
MESSAGES = ["", "BAILIFF", " Do not accept ", "M" * 201]


def _profile(columns, **kw) -> AccountHolderProfile:
    return AccountHolderProfile(name="t", fund_code="T", file_format=kw.get("file_format", "csv"),
                                encoding=kw.get("encoding", "utf-8"), delimiter=",",
                                has_header=kw.get("has_header", True),
                                date_format=kw.get("date_format", "%d/%m/%Y"),
                                columns=json.dumps(columns), complete=True,
                                skip_bad_lines=False)


def _both(reader: Reader, positions: dict, record: list[str], number: int = 5):
    fast = reader._fast(positions)(number, record)
    full = reader.parse(number, {f: record[i] for f, i in positions.items()})
    return fast, full if isinstance(full, str) else full.as_tuple()


@settings(max_examples=400, deadline=None)
@given(st.tuples(st.sampled_from(REFS), st.sampled_from(NAMES), st.sampled_from(ADDRESSES),
                 st.sampled_from(ADDRESSES), st.sampled_from(POSTCODES),
                 st.sampled_from(BALANCES), st.sampled_from(DATES), st.sampled_from(STOPS),
                 st.sampled_from(MESSAGES)))
def test_fast_parser_gives_the_full_parsers_row_or_hands_over(record):
    reader = Reader(_profile(COLUMNS))
    positions = {f: i for i, f in enumerate(COLUMNS)}
    fast, full = _both(reader, positions, list(record))
    assert fast is None or fast == full


@settings(max_examples=300, deadline=None)
@given(st.tuples(st.sampled_from(REFS), st.sampled_from(PARTS), st.sampled_from(PARTS),
                 st.sampled_from(PARTS), st.sampled_from(ADDRESSES), st.sampled_from(POSTCODES),
                 st.sampled_from(BALANCES), st.sampled_from(MESSAGES)))
def test_fast_parser_with_name_parts(record):
    reader = Reader(_profile(SPLIT))
    positions = {f: i for i, f in enumerate(SPLIT)}
    fast, full = _both(reader, positions, list(record))
    assert fast is None or fast == full


def test_fast_parser_takes_the_plain_lines():
    reader = Reader(_profile(COLUMNS))
    positions = {f: i for i, f in enumerate(COLUMNS)}
    for record in (["A1", "Mrs Siân Jones", "1 High St", "Newport", "np20 1aa", "12.50",
                    "31/03/2026", "Y", ""],
                   ["A2", "John Smith-Price", "", "", "", "-5", "", "", ""],
                   ["A3", "Zoë Ashcraft", "", "", "", "", "", "COURT", ""]):
        fast, full = _both(reader, positions, record)
        assert fast is not None and fast == full
    assert _both(reader, positions, ["A1", "Ann", "", "", "", "", "31/02/2026", "", ""])[0] is None


def _lines_by_line(data: bytes, encoding: str):
    try:
        return [t for _n, t in _decoded(io.BytesIO(data), encoding, None)], None
    except FileRefused as exc:
        return None, (exc.message, exc.lines)


def _lines_by_block(data: bytes, encoding: str):
    try:
        return [t for b in reading._line_blocks(io.BytesIO(data), encoding, None) for t in b], None
    except FileRefused as exc:
        return None, (exc.message, exc.lines)


@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("data,encoding", [
    (b"Ref,Name\nA1,Ann\nA2,Bob\n", "utf-8"),
    (b"Ref,Name\r\nA1,Ann\r\nA2,Bob", "utf-8"),
    (b"\xef\xbb\xbfRef,Name\nA1,Si\xc3\xa2n\n\nA2,\"Bob\nJones\"\n", "utf-8"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xef\xbb\xbf\xef\xbb\xbfRef\nA1\n", "utf-8"),
    (b"Ref,Name\nA1,Ann\nA2,Si\xe2n\nA3,x\n", "utf-8"),
    (b"\xef\xbb\xbfRef,Name\xff\nA1,Ann\n", "utf-8"),
    (b"Ref,Name\nA1,An\x00n\n", "utf-8"),
    (b"Ref,Name\nA1,Si\xe2n\rA2,x\x85y\n", "cp1252"),
    (b"Ref,Name\nA1,Si\x81n\n", "cp1252"),
    (b"", "utf-8"),
    (b"\n\n", "utf-8"),
])
def test_block_reading_gives_the_same_lines_and_refusals(monkeypatch, block, data, encoding):
    monkeypatch.setattr(reading, "BLOCK", block)
    assert _lines_by_block(data, encoding) == _lines_by_line(data, encoding)


def test_rows_number_lines_as_the_file_does(monkeypatch):
    monkeypatch.setattr(reading, "BLOCK", 16)
    data = ("Ref,Name,A1,A2,Postcode,Balance,AsAt,Stop,StopMsg\n"
            "A1,Ann Jones,,,,,,,\n"
            "\n"
            "A2,\"Bob\nPrice\",\"2 Low\nSt\",,,1.00,,,\n"
            "A3,,,,,,,,\n"
            "A4,Cy Dee,,,\n"
            "A5,Di Eve,,,,,31/03/2026,Y,\n").encode()
    rows = list(Reader(_profile(COLUMNS)).rows(io.BytesIO(data)))
    assert [n for n, _ in rows] == [2, 4, 7, 8, 9]  # a quoted field spans lines 4 to 6
    assert rows[1][1][2:4] == ("Bob Price", "2 Low\nSt")
    assert rows[2][1] == "Line 7: no name."
    assert rows[3][1] == "Line 8: 5 column(s), the file has 9."
    assert rows[4][1][7] == "On stop"
