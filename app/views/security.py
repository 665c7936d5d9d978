"""The Roles page: the role matrix of app/security/roles.py in words (who may see and change
what), instead of FAB's list of raw permission names. Roles are changed in code and applied with
`ims sync-roles`; this page only reads."""

from flask_appbuilder import BaseView, expose, has_access

from app.security.matrix import role_matrix
from app.security.roles import ROLES


class RoleMatrixView(BaseView):
    route_base = "/role-matrix"
    class_permission_name = "RoleModelView"  # who may read roles (Administrator, Auditor)
    base_permissions = ["can_list"]
    method_permission_name = {"index": "list"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        from app.extensions import db

        sm = self.appbuilder.sm
        members = {}
        for role_name in ROLES:
            role = sm.find_role(role_name)
            members[role_name] = len(role.user) if role is not None and hasattr(role, "user") \
                else None
        db.session.rollback()
        return self.render_template("ims/role_matrix.html", roles=ROLES, rows=role_matrix(),
                                    members=members,
                                    may_list_users=sm.has_access("can_list", "UserDBModelView"))


#: FAB's security menu entries replaced by the Roles page (their pages still answer, read-only)
HIDDEN_SECURITY_MENUS = ("List Roles", "List Groups", "Base Permissions", "Views/Menus",
                         "Permission on Views/Menus")


def register_security_views(appbuilder) -> None:
    from flask_babel import lazy_gettext as _l

    security = appbuilder.menu.find("Security")
    if security is not None:
        security.childs[:] = [c for c in security.childs if c.name not in HIDDEN_SECURITY_MENUS]
        while security.childs and security.childs[-1].name == "-":
            security.childs.pop()
    appbuilder.add_view(RoleMatrixView, "Roles", label=_l("Roles"), icon="fa-users",
                        category="Security")
