"""Test fixtures: one app per session on SQLite (default) or PostgreSQL (TEST_DATABASE_URL)."""

from __future__ import annotations

import os
import uuid

import pytest

os.environ["IMS_ENV"] = "testing"
# Commits need not reach the disk in tests (what they test is what a transaction holds, not
# whether it survives a power cut): PostgreSQL connections (libpq reads PGOPTIONS, and so do
# the CLI runs and pg_dump the tests start) commit without waiting for the WAL to be flushed,
# and SQLite files skip their fsyncs (app/models/sqlite.py). About 1.5 ms a commit each here.
os.environ.setdefault("PGOPTIONS", "-c synchronous_commit=off")
os.environ.setdefault("IMS_SQLITE_SYNCHRONOUS", "OFF")


def _database_per_worker() -> None:
    """Under pytest-xdist (`make test` runs two workers) each worker gets its own PostgreSQL
    database, named after TEST_DATABASE_URL's with the worker id appended, created on first use.
    SQLite needs nothing: each process already has its own file."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = os.environ.get("TEST_DATABASE_URL") or ""
    if not worker or not url.startswith("postgres") or os.environ.get("IMS_TEST_DB_WORKER") == worker:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url.replace("postgres://", "postgresql://", 1))
    name = f"{base.database}_{worker}"
    admin = create_engine(base.set(drivername="postgresql+psycopg", database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    os.environ["TEST_DATABASE_URL"] = base.set(database=name).render_as_string(hide_password=False)
    os.environ["IMS_TEST_DB_WORKER"] = worker


_database_per_worker()

from config import BASE_DIR, TestingConfig  # noqa: E402

PASSWORD = "Passw0rd!"


def _fresh_sqlite_path() -> str:
    path = os.path.join(BASE_DIR, "instance", f"test-{os.getpid()}.db")
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


@pytest.fixture(scope="session")
def app():
    """The one Flask app of the test session, with schema, roles, reference and demo data."""
    os.makedirs(os.path.join(BASE_DIR, "instance"), exist_ok=True)
    cfg = type("SessionTestingConfig", (TestingConfig,), {})
    if not os.environ.get("TEST_DATABASE_URL"):
        cfg.SQLALCHEMY_DATABASE_URI = "sqlite:///" + _fresh_sqlite_path()
        cfg.SQLALCHEMY_ENGINE_OPTIONS = {"connect_args": {"timeout": 30}}
    from app import create_app

    application = create_app(cfg)
    # pytest-flask keeps one app context pushed for each test, and Flask 3 reuses it for every
    # test-client request, so `g` (flask-login's cached user, FAB's g.user) would leak from one
    # request to the next. Production requests each get a fresh context; emulate that.
    application.before_request_funcs.setdefault(None, []).insert(0, _forget_request_user)
    with application.app_context():
        from flask_appbuilder import Model

        from app.extensions import db
        from app.services.audit import set_actor
        from app.services.seed import seed_demo, seed_reference

        engine = db.engine
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        else:
            Model.metadata.drop_all(engine)
        Model.metadata.create_all(engine)
        from app.models import install_database_objects

        install_database_objects(engine)  # triggers and indexes the migrations also create
        set_actor("seed")
        seed_reference(db.session)
        seed_demo(db.session, application.appbuilder)
        set_actor(None)
        db.session.remove()
    yield application


@pytest.fixture(autouse=True)
def _no_leftover_actor():
    """CLI commands and the tick job set the audit actor for their process; in-process test
    runs of them must not make later tests' changes look like theirs."""
    from app.services.audit import set_actor

    set_actor(None)
    yield


def _forget_request_user():
    from flask import g

    for key in ("_login_user", "user", "_jwt_extended_jwt_user", "_jwt_extended_jwt"):
        g.pop(key, None)


@pytest.fixture
def db(app):
    from app.extensions import db as _db

    yield _db
    _db.session.rollback()
    _db.session.remove()


@pytest.fixture
def session(db):
    return db.session


def login(client, username: str, password: str = PASSWORD):
    client.get("/logout/")
    return client.post("/login/", data={"username": username, "password": password},
                       follow_redirects=False)


@pytest.fixture
def as_user(client):
    """as_user('clerk') logs the test client in as that demo user."""

    def _as(username: str):
        resp = login(client, username)
        assert resp.status_code == 302, resp.data[:500]
        return client

    return _as


_token_cache: dict[str, str] = {}


def api_token(client, username: str, password: str = PASSWORD) -> str:
    if username not in _token_cache:
        resp = client.post("/api/v1/security/login",
                           json={"username": username, "password": password, "provider": "db",
                                 "refresh": False})
        assert resp.status_code == 200, resp.data
        _token_cache[username] = resp.json["access_token"]
    return _token_cache[username]


@pytest.fixture
def api(client):
    """api('clerk').get(url) / .post(url, json=...) with that user's bearer token."""

    class _Api:
        def __init__(self, username):
            self.headers = {"Authorization": f"Bearer {api_token(client, username)}"}

        def get(self, url, **kw):
            client.get("/logout/")
            return client.get(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

        def post(self, url, **kw):
            client.get("/logout/")
            return client.post(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

        def put(self, url, **kw):
            client.get("/logout/")
            return client.put(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    return _Api


def unique(prefix: str = "T", length: int = 8) -> str:
    """A short unique code for test data (fund codes are at most 10 characters)."""
    return (prefix + uuid.uuid4().hex.upper())[:length]


@pytest.fixture(scope="session")
def live_url(app):
    """The app served over real HTTP from a thread of this process (shares the test database)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session", autouse=True)
def simulator_url(app, live_url):
    """The payment-provider simulator (mounted at /simulator) served over real HTTP: the card
    payment and card refund code talks to it through the GOV.UK Pay adapter."""
    app.config.update(IMS_SIMULATOR_URL=f"{live_url}/simulator", IMS_PUBLIC_BASE_URL=live_url)
    return f"{live_url}/simulator"


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright."""
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="en-GB")
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()


#: the suite runs on PostgreSQL (TEST_DATABASE_URL), not on the embedded SQLite
ON_POSTGRES = (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgres")

#: accessibility checks and sweeps of pages: run once in CI, on SQLite (what a page's markup
#: is does not depend on the database)
once_on_sqlite = pytest.mark.skipif(
    ON_POSTGRES,
    reason="accessibility checks run once, on SQLite (the pages do not depend on the database)")

#: The browser journeys (tests/browser) run on SQLite; on PostgreSQL only these files' do, as a
#: smoke of the browser on the production database (a receipt, a journal and its undo; a
#: two-step approval). What the pages' scripts do does not depend on the database, and every
#: request a journey makes is also tested on both databases by the view, API and service tests
#: (tests/views, tests/api, tests/integration): the rest would repeat them for some 3 minutes.
BROWSER_ON_POSTGRES = {"test_cashier.py", "test_tasks_browser.py"}


#: The slowest files, slowest first (a minute or more each on SQLite): collected first, so that
#: pytest-xdist hands them out first (`make test` turns off its reordering by number of tests,
#: which sent the slow files of few tests last, to run alone at the end while the other workers
#: stood idle). The rest follow in their usual order.
SLOW_FIRST = ("browser/test_axe_sweep.py", "browser/test_injection.py",
              "api/test_schemathesis.py", "integration/test_audit_tamper.py",
              "integration/test_migrations.py", "views/test_permission_matrix.py",
              "browser/test_refunds.py", "browser/test_layout.py", "browser/test_suspense.py",
              "integration/test_bundle_empty_site.py", "integration/test_operations.py",
              "browser/test_portal_browser.py", "integration/test_gl_cli.py",
              "browser/test_accessibility.py")


def _slowness(item) -> int:
    path = f"{item.path.parent.name}/{item.path.name}"
    return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_slowness)  # stable: each file's tests keep their order
    if not ON_POSTGRES:
        return
    once = pytest.mark.skip(reason="browser journeys run on SQLite (BROWSER_ON_POSTGRES: the "
                                   "smoke that runs on both)")
    for item in items:
        if item.path.parent.name == "browser" and item.path.name not in BROWSER_ON_POSTGRES:
            item.add_marker(once)


def browser_login(page, live_url, username, password=PASSWORD):
    page.goto(f"{live_url}/logout/")
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state("networkidle")


@pytest.fixture
def demo(session):
    """The approval_demo workflow definition active before the test, active again after it."""
    from app.services import workflow as wf
    from app.services import workflow_admin as admin
    from tests.workflows.helpers import deploy_demo

    original = deploy_demo(session)
    session.commit()
    yield original
    session.rollback()
    if wf.active_definition(session, "approval_demo").id != original.id:
        admin.activate_version(session, "approval_demo", original.version, "test-cleanup")


SCREENSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "test-results")


def screenshot(page, name: str) -> str:
    """Save a full-page screenshot as test-results/<name>.png (kept by CI as an artefact)."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.join(SCREENSHOTS, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path
