"""`cohortflow console-user add|passwd|bind|unbind|remove|list`: the console's users.

They live in the console's own tables (created by the migrate step) and are managed
here, against the database. Bindings are `app=role` (role viewer or editor).
Passwords are read from --password-stdin (one line) or asked for at the prompt.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from services.admin.rebuild_command import DEV_DATABASE_FILE, DatabaseOption, dev_address
from services.cli import output
from services.cli.client import CliError
from services.common.config import DEFAULT_DATABASE_URL
from services.console.users import ConsoleUsers, UserError

app = typer.Typer(
    help="Users of the web console: passwords and app bindings.", no_args_is_help=True
)

AppsOption = Annotated[
    list[str],
    typer.Option("--app", help="app=role (viewer or editor); repeat for more apps."),
]
StdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin (one line).")
]


def _users(database_url: str | None) -> ConsoleUsers:
    try:
        return ConsoleUsers.open(
            database_url or dev_address(DEV_DATABASE_FILE, DEFAULT_DATABASE_URL), 1
        )
    except Exception as error:  # unreachable database: one line, not a trace
        raise CliError(f"cannot reach the database ({error})") from None


def _bindings(apps: list[str]) -> dict[str, str]:
    out = {}
    for item in apps:
        app_id, sep, role = item.partition("=")
        if not sep:
            raise CliError(f"--app {item!r}: expected app=role, e.g. demo=editor")
        out[app_id.strip()] = role.strip()
    return out


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _run(action: object) -> None:
    try:
        action()  # type: ignore[operator]
    except UserError as error:
        raise CliError(str(error)) from None


@app.command("add")
def add(
    username: str,
    apps: AppsOption,
    password_stdin: StdinOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Create a console user bound to apps, e.g. `add ana --app demo=editor`."""
    bindings = _bindings(apps)
    password = _password(password_stdin)
    users = _users(database_url)
    try:
        _run(lambda: users.add(username, password, bindings))
    finally:
        users.close()
    output.stdout().print(
        f"added {username}: " + ", ".join(f"{a} ({r})" for a, r in bindings.items())
    )


@app.command("passwd")
def passwd(
    username: str, password_stdin: StdinOption = False, database_url: DatabaseOption = None
) -> None:
    """Set a user's password (ends their sessions)."""
    password = _password(password_stdin)
    users = _users(database_url)
    try:
        _run(lambda: users.set_password(username, password))
    finally:
        users.close()
    output.stdout().print(f"password of {username} changed")


@app.command("bind")
def bind(username: str, apps: AppsOption, database_url: DatabaseOption = None) -> None:
    """Bind a user to more apps, or change their role in one."""
    users = _users(database_url)
    try:
        for app_id, role in _bindings(apps).items():
            _run(lambda app_id=app_id, role=role: users.bind(username, app_id, role))
    finally:
        users.close()
    output.stdout().print(f"bound {username}")


@app.command("unbind")
def unbind(username: str, app_id: str, database_url: DatabaseOption = None) -> None:
    """Take an app away from a user."""
    users = _users(database_url)
    try:
        if not users.unbind(username, app_id):
            raise CliError(f"{username} is not bound to {app_id}")
    finally:
        users.close()
    output.stdout().print(f"{username} no longer sees {app_id}")


@app.command("remove")
def remove(username: str, database_url: DatabaseOption = None) -> None:
    """Delete a user (and their sessions)."""
    users = _users(database_url)
    try:
        if not users.remove(username):
            raise CliError(f"no user {username!r}")
    finally:
        users.close()
    output.stdout().print(f"removed {username}")


@app.command("list")
def list_users(database_url: DatabaseOption = None) -> None:
    """Every console user and their apps."""
    users = _users(database_url)
    try:
        for username, apps in users.list():
            bound = ", ".join(f"{a} ({r})" for a, r in apps.items()) or "no app"
            output.stdout().print(f"{username}: {bound}")
    finally:
        users.close()
