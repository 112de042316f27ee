"""The operator commands, added to the `cohortflow` command tree by its entry point."""

from __future__ import annotations

import typer

from services.admin import console_user_commands
from services.admin.determinism_command import determinism
from services.admin.rebuild_command import rebuild


def register(app: typer.Typer) -> None:
    """Add `rebuild`, `determinism` and `console-user` to the command tree `app`."""
    app.command("rebuild")(rebuild)
    app.command("determinism")(determinism)
    app.add_typer(console_user_commands.app, name="console-user")
