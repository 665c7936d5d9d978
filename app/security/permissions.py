"""How FAB methods map to our two permissions per resource (can_read / can_write), for the
pages' ModelViews and the APIs' ModelRestApis alike."""

#: FAB method name -> our permission suffix (can_read / can_write)
METHOD_PERMISSIONS = {
    "list": "read", "show": "read", "download": "read", "index": "read",
    "add": "write", "edit": "write", "delete": "write", "action": "write", "action_post": "write",
    # ModelRestApi
    "get": "read", "get_list": "read", "info": "read", "post": "write", "put": "write",
}
