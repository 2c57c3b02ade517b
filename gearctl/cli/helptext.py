"""The "Examples" block that ends every command's --help (an epilog, so it comes
after the options): `@app.command(epilog=examples("gearctl ping", ...))`."""

from __future__ import annotations

HEADING = "Examples:"


def examples(*commands: str) -> str:
    """Two or three command lines, shown one per line under HEADING."""
    return "\n\n".join([HEADING, *(f"  {c}" for c in commands)])
