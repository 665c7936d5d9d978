"""Base classes for IMS views: permissions collapsed to can_read / can_write per resource."""

from __future__ import annotations

from flask_appbuilder import ModelView
from flask_appbuilder.models.sqla.interface import SQLAInterface

#: FAB method name -> our permission suffix (can_read / can_write)
METHOD_PERMISSIONS = {
    "list": "read", "show": "read", "download": "read", "index": "read",
    "add": "write", "edit": "write", "delete": "write", "action": "write", "action_post": "write",
    # ModelRestApi
    "get": "read", "get_list": "read", "info": "read", "post": "write", "put": "write",
}


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


def datamodel(model) -> SQLAInterface:
    return SQLAInterface(model)
