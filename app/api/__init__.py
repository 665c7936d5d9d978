"""REST APIs (FAB BaseApi / ModelRestApi) under /api/v1, per API.md."""
