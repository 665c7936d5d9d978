"""Schemathesis over the whole OpenAPI document, as an Administrator and as an Income Clerk.

Every operation of /api/v1/_openapi gets a bounded number of generated requests, valid ones and
invalid ones, sent in-process through the app's WSGI interface with the demo user's bearer token.
A response fails the run when it is a server error (5xx) or does not conform to the document
(status code, content type, headers, body schema).

It runs against the demo data of the shared test database, so money operations meet real funds,
transactions and suspense items. What the run changes (reference data, users, approval limits,
posted money) is undone afterwards: the SQLite database is copied before the run and copied back
after it, so the tests that follow see the database as they would have without this run.
The run is on SQLite only (see issue #15's settled questions: once in CI, not on both databases).
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from tests.conftest import api_token

pytestmark = pytest.mark.skipif(
    os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
    reason="the schemathesis run is on SQLite only (once in CI)")

#: Generated requests per operation, per generation mode (valid, invalid), per user: about 125
#: operations x 2 modes x 2 users x 6 requests, 1 to 3 minutes on 2 shared cores.
MAX_EXAMPLES = int(os.environ.get("IMS_SCHEMATHESIS_EXAMPLES", "6"))



@pytest.fixture
def database_restored_afterwards(app, db):
    """Copy the SQLite test database aside; copy it back (and reconnect) after the test."""
    path = db.engine.url.database
    db.session.remove()
    saved = sqlite3.connect(":memory:")
    with sqlite3.connect(path) as source:
        source.backup(saved)
    inline = app.config.get("IMS_IMPORT_INLINE")
    app.config["IMS_IMPORT_INLINE"] = True  # no background import thread outlives the run
    try:
        yield
    finally:
        app.config["IMS_IMPORT_INLINE"] = inline
        db.session.remove()
        db.engine.dispose()
        with sqlite3.connect(path) as target:
            saved.backup(target)
        saved.close()
        db.engine.dispose()


@pytest.mark.parametrize("username", ["admin", "clerk"])
def test_every_operation_conforms_and_never_fails(app, client, username,
                                                   database_restored_afterwards):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    headers = {"Authorization": f"Bearer {api_token(client, username)}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_wsgi("/api/v1/_openapi", app, headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 100, "the document lists every operation"
    failures: list[str] = []
    summary: list[str] = []
    started = time.monotonic()
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), print_blob=False)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                case.call_and_validate(headers=headers, checks=checks)

            try:
                run()
            except Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
                continue  # nothing to make invalid: no parameters and no body
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures
                failures.append(f"{operation.label} ({mode.value}): {exc}")
                found = getattr(exc, "exceptions", None) or [exc]
                summary.extend(f"{operation.label} ({mode.value}): {_headline(f)}" for f in found)
    elapsed = time.monotonic() - started
    print(f"schemathesis as {username}: {elapsed:.0f} s")
    assert not failures, "\n".join(summary) + "\n\n" + "\n\n".join(failures[:5])


def _headline(failure) -> str:
    message = str(getattr(failure, "message", failure)).strip().splitlines()
    return f"{getattr(failure, 'title', type(failure).__name__)}: {message[0] if message else ''}"
