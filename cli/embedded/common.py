"""What the embedded services share: where they live, how they are named, their errors."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sqlalchemy.engine import make_url


class DevServiceError(RuntimeError):
    """An embedded service could not be started; the message says what to do instead."""


def default_data_dir() -> Path:
    return Path.cwd() / ".data"


def display_path(path: Path) -> str:
    """Relative to the working directory when under it: shorter to read and to paste.

    Symbolic links are kept, not resolved: the venv's python is one, and only it has the venv.
    """
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def redacted(url: str) -> str:
    """A database URL fit to print: its password hidden."""
    try:
        parsed = make_url(url)
    except Exception:
        return "<unparsable URL>"
    # Rendering re-encodes the query (the embedded server's socket path): only when needed.
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail_of(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
