"""Portal fixtures (tests/portal/fixtures.py, also used by tests/browser/test_portal_browser.py)."""

from tests.portal.fixtures import online  # noqa: F401
