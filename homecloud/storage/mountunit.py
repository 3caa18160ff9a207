"""systemd mount units for pools: unit names (systemd's path escaping) and unit text.

Pure functions: the names must match what systemd derives from ``Where=``, or systemd refuses
the unit, so the escaping follows ``systemd-escape --path`` exactly (tested against it).
"""

from __future__ import annotations

from pathlib import PurePath

# Characters systemd leaves alone in unit names; everything else becomes \xNN (per UTF-8 byte).
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


def escape_path(path: str) -> str:
    """``systemd-escape --path PATH``: '/' separators become '-', other bytes \\xNN."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        return "-"
    if ".." in parts:
        raise ValueError(f"{path!r} is not a normalized path ('..' cannot be escaped)")
    data = "/".join(parts).encode()
    out: list[str] = []
    for index, byte in enumerate(data):
        if byte == ord("/"):
            out.append("-")
        elif byte in _PLAIN and not (index == 0 and byte == ord(".")):
            out.append(chr(byte))  # a leading '.' is escaped: no hidden unit names
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def mount_unit_name(where: PurePath | str) -> str:
    return escape_path(str(where)) + ".mount"


def _unit_value(value: object) -> str:
    # '%' starts a specifier in unit files; a literal one is written '%%'.
    return str(value).replace("%", "%%")


def render_mount_unit(*, what: PurePath | str, where: PurePath | str, fstype: str,
                      options: str, description: str, before: tuple[str, ...] = (),
                      wanted_by: str = "local-fs.target") -> str:
    """The text of a .mount unit. For a loop mount systemd itself orders it after the mount
    holding ``what``."""
    lines = ["# Written by homecloud; it is rewritten when the pool settings change.",
             "[Unit]", f"Description={_unit_value(description)}"]
    if before:
        lines.append("Before=" + " ".join(before))
    lines += ["", "[Mount]", f"What={_unit_value(what)}", f"Where={_unit_value(where)}",
              f"Type={fstype}", f"Options={_unit_value(options)}",
              "", "[Install]", f"WantedBy={wanted_by}", ""]
    return "\n".join(lines)
