"""What the benchmark scripts share when they write a table: the machine's load
(``uptime``) at the start and the end, and printing the table and saving it with ``--out``."""

from __future__ import annotations

import subprocess


def uptime() -> str:
    """``uptime``'s line: the load average the numbers were measured under."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def finish(lines: list[str], out: str) -> None:
    """Append the closing ``uptime``, print the table and write it to ``out`` (if given)."""
    lines.append(f"\nuptime at end: {uptime()}")
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
