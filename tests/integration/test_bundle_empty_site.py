"""A bundle exported from this database imports into an empty one (migrated by Alembic, no
reference data), which then exports the same configuration, and its portal answers."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from config import BASE_DIR

SECTIONS = ("vat_codes", "offices", "validators", "funds", "payment_methods",
            "account_holder_profiles", "bank_profiles", "processing_rules")


def _flask(env, *args):
    return subprocess.run([sys.executable, "-m", "flask", "--app", "run", *args], cwd=BASE_DIR,
                          env=env, capture_output=True, text=True, timeout=300)


def test_bundle_into_an_empty_database(app, tmp_path):
    exported = app.test_cli_runner().invoke(args=["ims", "config", "export"])
    assert exported.exit_code == 0, exported.output
    bundle_path = tmp_path / "site.yaml"
    bundle_path.write_text(exported.output, encoding="utf-8")
    db = tmp_path / "empty.db"
    env = {**os.environ, "IMS_ENV": "development", "DATABASE_URL": f"sqlite:///{db}",
           "IMS_AUDIT_KEY": "empty-site-audit-key-0123456789abcdef"}
    env.pop("TEST_DATABASE_URL", None)
    for args in (("db", "upgrade"), ("ims", "sync-roles")):
        r = _flask(env, *args)
        assert r.returncode == 0, r.stdout + r.stderr
    r = _flask(env, "ims", "config", "import", str(bundle_path), "--dry-run")
    assert r.returncode == 0 and "+ funds CTAX" in r.stdout, r.stdout + r.stderr
    r = _flask(env, "ims", "config", "import", str(bundle_path))
    assert r.returncode == 0 and "imported" in r.stdout, r.stdout + r.stderr
    again = _flask(env, "ims", "config", "export")
    assert again.returncode == 0, again.stderr
    ours, theirs = yaml.safe_load(exported.output), yaml.safe_load(again.stdout)
    for section in SECTIONS:
        assert ours[section] == theirs[section], section
    r = _flask(env, "ims", "config", "import", str(bundle_path), "--dry-run")
    assert "nothing to change" in r.stdout or all(
        line.startswith("=") or line.startswith("?") or line.startswith("dry run")
        for line in r.stdout.splitlines()), r.stdout
    r = _flask(env, "ims", "audit-verify")
    assert r.returncode == 0, r.stdout + r.stderr
    # the portal of the new site answers (its login page)
    probe = ("from run import app\nc = app.test_client()\n"
             "r = c.get('/login/')\nprint(r.status_code)\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=BASE_DIR, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("200"), r.stdout + r.stderr
