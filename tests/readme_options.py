"""The README's table of the worker kinds' options, generated from workers/kinds.py.

    .venv/bin/python -m tests.readme_options     # rewrites the table in README.md

tests/test_readme.py fails while the README's table differs from `table()`,
so the documented options cannot drift from the code.
"""
import sys
from pathlib import Path

from workers import kinds

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- worker options: generated from workers/kinds.py by `python -m tests.readme_options` -->"
END = "<!-- end of worker options -->"


def _default(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[:3])
        return f"{len(value)} symbols: {shown}, ..." if len(value) > 3 else f"[{shown}]"
    return str(value)


def table(registry_kinds=kinds.KINDS):
    """One row per option and default: the kinds that share it are listed together."""
    rows = {}  # (key, default, help) -> kind names, in the registry's order
    for name, kind in registry_kinds.items():
        for key, option in kind.options.items():
            rows.setdefault((key, _default(option.default), option.help), []).append(name)
    lines = [BEGIN, "", "| option | of | default | meaning |", "|---|---|---|---|"]
    order = list(dict.fromkeys(key for key, _, _ in rows))  # rows of one option together
    for (key, default, help_text), names in sorted(rows.items(), key=lambda row: order.index(row[0][0])):
        lines.append(f"| `{key}` | {', '.join(f'`{n}`' for n in names)} | {default} | {help_text.replace('|', '/')} |")
    plain = [name for name, kind in registry_kinds.items() if not kind.options]
    lines += ["", f"No options of their own: {', '.join(f'`{n}`' for n in plain)}.", "", END]
    return "\n".join(lines)


def current(text):
    """The generated block as the README has it, or None."""
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN):text.index(END) + len(END)]


def main():
    text = README.read_text()
    old = current(text)
    if old is None:
        print(f"README.md has no {BEGIN!r} ... {END!r} block", file=sys.stderr)
        return 1
    README.write_text(text.replace(old, table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
