"""`ims sync-roles`: create every permission, then give each role exactly what roles.py says."""

from __future__ import annotations

from app.security.roles import ROLES, in_menu, roles_for


class UncoveredPermissions(RuntimeError):
    """Some registered permission has no rule in app/security/roles.py."""


def menu_grants(appbuilder) -> dict[str, set[str]]:
    """Menu entries a role may see: those whose view the role can use, and their categories."""
    grants: dict[str, set[str]] = {role: set() for role in ROLES}
    views_by_name = {}
    for view in appbuilder.baseviews:
        views_by_name[view.__class__.__name__] = view

    def view_for(item):
        baseview = getattr(item, "baseview", None)
        return baseview

    for category in appbuilder.menu.get_list():
        children = category.childs or []
        for item in children or [category]:
            if getattr(item, "name", "-") == "-":
                continue
            view = view_for(item)
            if view is None:
                continue
            for role in ROLES:
                if _role_can_use(role, view):
                    grants[role].add(item.name)
                    if children:
                        grants[role].add(category.name)
    return grants


def menu_permission(view) -> str:
    """The permission a menu link needs: the one guarding the view's default page."""
    method = view.default_view
    mapped = (view.method_permission_name or {}).get(method)
    func = getattr(view, method, None)
    return "can_" + (mapped or getattr(func, "_permission_name", method)).removeprefix("can_")


def _role_can_use(role: str, view) -> bool:
    """Whether the menu shows the view to the role: the role may open its default page and has a
    use for it (roles.MENU_ROLES)."""
    perm = menu_permission(view)
    return perm in (view.base_permissions or []) and role in (
        roles_for(perm, view.class_permission_name) or ()) and \
        in_menu(role, view.class_permission_name)


def registered_permissions(appbuilder) -> set[tuple[str, str]]:
    """(permission, view menu) pairs the registered views, APIs and menu entries need.

    Views that share a class_permission_name contribute the union of their permissions.
    """
    pairs = set()
    for view in appbuilder.baseviews:
        for perm in view.base_permissions or ():
            pairs.add((perm, view.class_permission_name))
    for name in appbuilder.menu.get_flat_name_list():
        if name and name != "-":
            pairs.add(("menu_access", name))
    return pairs


def sync_roles(appbuilder, session) -> dict[str, int]:
    """Apply roles.py to the database. Raises UncoveredPermissions if a permission has no rule.

    Permissions are created here rather than by FAB's add_permissions(), which deletes a
    permission from a view menu when two views sharing it declare different permissions, and
    grants everything it creates to the admin role (roles.py decides what Administrator holds).
    Running it again changes nothing.
    """
    sm = appbuilder.sm
    for role_name in (*ROLES, sm.auth_role_public):
        if sm.find_role(role_name) is None:
            sm.add_role(role_name)
    menus = menu_grants(appbuilder)
    uncovered = []
    wanted: dict[str, list] = {role: [] for role in ROLES}
    for perm, view_menu in sorted(registered_permissions(appbuilder)):
        if perm == "menu_access":
            roles = {role for role in ROLES if view_menu in menus[role]}
        else:
            roles = roles_for(perm, view_menu)
            if roles is None:
                uncovered.append(f"{perm} on {view_menu}")
                continue
        if not roles:
            sm.add_permission_view_menu(perm, view_menu)
            continue
        pvm = sm.add_permission_view_menu(perm, view_menu)
        for role in roles:
            wanted[role].append(pvm)
    if uncovered:
        raise UncoveredPermissions("no rule in app/security/roles.py for: " + ", ".join(sorted(uncovered)))
    counts = {}
    for role_name in ROLES:
        role = sm.find_role(role_name)
        if set(role.permissions) != set(wanted[role_name]):
            role.permissions = wanted[role_name]
        counts[role_name] = len(wanted[role_name])
    public = sm.find_role(sm.auth_role_public)
    if public.permissions:
        public.permissions = []
    session.commit()
    return counts
