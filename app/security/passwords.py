"""Password policy for new and changed passwords."""

import re

from flask_appbuilder.exceptions import PasswordComplexityValidationError
from flask_babel import gettext as _

COMMON = {"password", "passw0rd", "password1", "letmein", "welcome1", "qwerty123", "council123"}


def password_policy(password: str) -> None:
    """At least 8 characters with upper, lower, digit and symbol; not a common password."""
    password = password or ""
    problems = []
    if len(password) < 8:
        problems.append(_("at least 8 characters"))
    if not re.search(r"[A-Z]", password):
        problems.append(_("an upper-case letter"))
    if not re.search(r"[a-z]", password):
        problems.append(_("a lower-case letter"))
    if not re.search(r"\d", password):
        problems.append(_("a digit"))
    if not re.search(r"[^A-Za-z0-9]", password):
        problems.append(_("a symbol"))
    if password.lower() in COMMON:
        problems.append(_("not a commonly used password"))
    if problems:
        raise PasswordComplexityValidationError(
            _("Password needs %(rules)s.", rules=", ".join(problems)))
