"""Base classes for IMS views: permissions collapsed to can_read / can_write per resource."""

from __future__ import annotations

from datetime import date, datetime

from flask_appbuilder import ModelView
from flask_babel import gettext
from wtforms import BooleanField
from wtforms.fields.core import UnboundField
from wtforms.validators import DataRequired, InputRequired

from app.formatting import when
from app.models.interface import datamodel  # noqa: F401
from app.security.permissions import METHOD_PERMISSIONS


class ImsModelView(ModelView):
    """A FAB CRUD view whose record page shows the record's audit history.

    Reference data is never deleted (it is disabled instead), so delete is not offered.
    """

    method_permission_name = METHOD_PERMISSIONS
    base_permissions = ["can_read", "can_write"]
    show_template = "ims/show_with_history.html"
    exclude_route_methods = {"delete", "download"}
    page_size = 25

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extra_args = {**(self.extra_args or {}), "entity_name": self.datamodel.obj.__name__}
        for form in (self.add_form, self.edit_form):
            _optional_checkboxes(form)
        self.formatters_columns = {**{col: _display for col in {*self.list_columns,
                                                                 *self.show_columns}},
                                   **(self.formatters_columns or {})}


def _display(value):
    """Yes/No for booleans and nothing (not "None") for empty values, in lists and record pages."""
    if value is None:
        return ""
    if value is True:
        return gettext("Yes")
    if value is False:
        return gettext("No")
    if isinstance(value, (date, datetime)):
        return when(value)
    return value


def _optional_checkboxes(form) -> None:
    """FAB marks checkboxes of NOT NULL columns as required, so "unticked" (False) could never be
    saved. A checkbox always has a value: drop the required validator."""
    for name in dir(form):
        field = getattr(form, name, None)
        if isinstance(field, UnboundField) and issubclass(field.field_class, BooleanField):
            field.kwargs["validators"] = [v for v in field.kwargs.get("validators", [])
                                          if not isinstance(v, (DataRequired, InputRequired))]


