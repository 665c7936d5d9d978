"""The Imports page describes each format and offers a sample file, and each sample imports as
it stands (issue 21 item 12)."""

from __future__ import annotations

import io

import pytest

from app.views.imports import FORMAT_HELP, FORMAT_LABELS
from tests.conftest import unique


@pytest.fixture
def inline(app):
    app.config["IMS_IMPORT_INLINE"] = True
    yield
    app.config["IMS_IMPORT_INLINE"] = False


def test_page_describes_every_format_with_a_sample(as_user):
    c = as_user("clerk")
    html = c.get("/imports/").get_data(as_text=True)
    assert set(FORMAT_HELP) == set(FORMAT_LABELS)
    for code in FORMAT_LABELS:
        assert f'id="format-{code}"' in html and f'href="/imports/samples/{code}"' in html
    assert "transaction_date" in html and "account_reference" in html


@pytest.mark.parametrize("fmt", sorted(FORMAT_HELP))
def test_each_sample_downloads_and_imports(as_user, inline, session, fmt):
    from app.models.imports import BankProfile

    c = as_user("clerk")
    resp = c.get(f"/imports/samples/{fmt}")
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    data = resp.data
    assert data
    form = {"format": fmt}
    if fmt == "bank_csv":
        name = unique("Sample bank")
        session.add(BankProfile(name=name, skip_rows=2, date_column="Date",
                                date_format="%d/%m/%Y", sign_convention="signed",
                                amount_column="Amount", reference_column="Memo",
                                narrative_column="Subcategory"))
        session.commit()
        form["profile"] = str(session.query(BankProfile).filter_by(name=name).one().id)
    form["file"] = (io.BytesIO(data), FORMAT_HELP[fmt][1])
    up = c.post("/imports/upload", data=form, content_type="multipart/form-data",
                headers={"Accept": "application/json", "X-Requested-With": "fetch"})
    if up.status_code == 409:  # the same sample file was imported earlier in this database
        from app.models.imports import ImportBatch

        earlier = session.query(ImportBatch).filter(
            ImportBatch.sha256 == __import__("hashlib").sha256(data).hexdigest()).first()
        assert earlier is not None and earlier.status == "succeeded", up.get_data(as_text=True)
        return
    assert up.status_code == 201, up.get_data(as_text=True)[:500]
    result = c.get(up.json["progress_url"]).json
    assert result["status"] == "succeeded" and not result["errors"], result
    assert result["rows_total"] >= 2
    assert result["shown"]["total_amount"].startswith("£")


def test_unknown_sample_is_404_and_cashier_refused(as_user):
    assert as_user("clerk").get("/imports/samples/nope").status_code == 404
    assert as_user("cashier").get("/imports/samples/ims_csv").status_code == 403
