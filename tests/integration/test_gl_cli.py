"""`ims gl-export`, `ims gl-layout-add` and `ims export-ledger` (now a thin wrapper over an
itemised batch in the generic layout)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

from tests.integration.test_gl_export import code_all_funds, receipt


def _ims(app, *args):
    env = {**os.environ, "IMS_ENV": "testing",
           "TEST_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"]}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "run", "ims", *args],
                          env=env, capture_output=True, text=True)


def test_cli_batches_and_layouts(app, session, tmp_path):
    code_all_funds(session)
    session.commit()
    receipt(session, "2014-01-02", "9.99")
    target = tmp_path / "gl.csv"
    done = _ims(app, "gl-export", "--cut-off", "2014-01-02", "--layout", "unit4_gl07",
                "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert "control total" in done.stderr
    assert target.read_text().startswith("batch_id,interface")
    done = _ims(app, "gl-export", "--cut-off", "2014-01-02")
    assert done.returncode == 1 and "Nothing to export" in done.stderr
    future = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    done = _ims(app, "gl-export", "--cut-off", future)
    assert done.returncode == 1 and "future" in done.stderr
    receipt(session, "2014-01-03", "1.00")
    wrapped = _ims(app, "export-ledger", "--date", "2014-01-03", "-o", str(target))
    assert wrapped.returncode == 0, wrapped.stderr
    assert target.read_text().startswith("Batch,Date,Period,GL code")
    bad = _ims(app, "export-ledger", "--date", "25/11/2026")
    assert bad.returncode != 0 and "Invalid value" in bad.stderr
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps({"name": "cli_test_layout", "columns": [
        {"header": "Dt", "field": "accounting_date"}, {"header": "Amt", "field": "debitt"}]}))
    done = _ims(app, "gl-layout-add", str(layout))
    assert done.returncode == 1 and "unknown field 'debitt'" in done.stderr
    layout.write_text(json.dumps({"name": "cli_test_layout", "columns": [
        {"header": "Dt", "field": "accounting_date"}, {"header": "Dr", "field": "debit"},
        {"header": "Cr", "field": "credit"}]}))
    done = _ims(app, "gl-layout-add", str(layout))
    assert done.returncode == 0 and "version 1" in done.stdout
