"""The figures, one a line (`name: value unit`), on stdout and in bench/out/last-<mode>.txt."""

from __future__ import annotations

import sys
from pathlib import Path


def _format(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def figure(self, name: str, value: object, unit: str = "") -> None:
        line = f"{name}: {_format(value)}" + (f" {unit}" if unit else "")
        self.lines.append(line)
        print(line, flush=True)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")


def say(message: str) -> None:
    """Progress, on stderr, so that stdout carries only the figures."""
    print(f"bench: {message}", file=sys.stderr, flush=True)
