"""Account holders from the revenues systems: profiles, sync (dry run, apply), search."""

from app.services.accounts.reading import FileRefused, profile_problems  # noqa: F401
from app.services.accounts.sync import (  # noqa: F401
    apply_sync,
    change_list,
    check_sync,
    counts,
    discard,
    find_profile,
    receive,
    start_background,
    sync_result,
)
