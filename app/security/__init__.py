"""Roles as code, the security manager and the password policy."""
