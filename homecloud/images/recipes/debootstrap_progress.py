"""debootstrap's "I: ..." lines as Progress for one bar over the whole build.

debootstrap says what it does one package at a time: "Retrieving"/"Validating" each .deb,
"Extracting" the required ones, then dpkg "Unpacking" and "Configuring" each package. With N
packages the build is counted as 4N units: N downloads, N extractions, 2N installs (unpack and
configure). N is not printed up front; until the downloads are over it is estimated from a
measured build (``expected_packages``), then it is the number of packages retrieved. A phase that
ends counts as complete, so the bar only moves forward.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from homecloud.images.progress import Progress

# bookworm minbase + systemd, systemd-sysv, dbus, iproute2: 123 packages (measured).
EXPECTED_PACKAGES = 123
PHASES = ("download", "extract", "install")
_WEIGHTS = {"download": 1, "extract": 1, "install": 2}  # in units of N

_PACKAGE_FILE_RE = re.compile(r"I: (?:Retrieving|Validating) (\S+) (\S+)$")
_EXTRACT_RE = re.compile(r"I: Extracting (\S+)\.\.\.$")
# One package name: stage headings ("Unpacking the base system...") have spaces and do not match.
_INSTALL_RE = re.compile(r"I: (?:Unpacking|Configuring) (\S+)\.\.\.$")
_SUCCESS = "I: Base system installed successfully."


@dataclass
class DebootstrapProgress:
    """Feed it debootstrap's output lines; it returns a Progress for each line worth showing."""

    expected_packages: int = EXPECTED_PACKAGES
    phase: str = "prepare"
    errors: list[str] = field(default_factory=list)
    _downloaded: set[str] = field(default_factory=set)
    _packages: int | None = None  # N, once the downloads are over
    _count: int = 0  # units done in the current phase
    _installed: set[tuple[str, str]] = field(default_factory=set)

    @property
    def packages(self) -> int:
        if self._packages is not None:
            return self._packages
        return max(self.expected_packages, len(self._downloaded))

    @property
    def total(self) -> int:
        return sum(_WEIGHTS.values()) * self.packages

    @property
    def done(self) -> int:
        if self.phase == "done":
            return self.total
        if self.phase not in PHASES:
            return 0
        index = PHASES.index(self.phase)
        finished = sum(_WEIGHTS[p] for p in PHASES[:index]) * self.packages
        current = min(self._count, _WEIGHTS[self.phase] * self.packages)
        return min(finished + current, self.total - 1)

    def _enter(self, phase: str) -> None:
        if phase != self.phase and (phase == "done" or self.phase not in PHASES
                                    or PHASES.index(phase) > PHASES.index(self.phase)):
            if self.phase == "download":
                self._packages = max(len(self._downloaded), 1)
            self.phase = phase
            self._count = 0

    def feed(self, line: str) -> Progress | None:
        line = line.rstrip()
        if line.startswith("E: "):
            self.errors.append(line[3:])
            return None
        if not line.startswith("I: "):
            return None
        message = line[3:]
        if line == _SUCCESS:
            self._enter("done")
        elif match := _PACKAGE_FILE_RE.match(line):
            self._enter("download")
            if match.group(1) not in self._downloaded:
                self._downloaded.add(match.group(1))
                self._count += 1
        elif match := _EXTRACT_RE.match(line):
            self._enter("extract")
            self._count += 1
        elif line.startswith("I: Installing core packages"):
            self._enter("install")
        elif match := _INSTALL_RE.match(line):
            self._enter("install")
            step = (message.split(" ", 1)[0], match.group(1))  # ("Unpacking", "libc6")
            if step not in self._installed:
                self._installed.add(step)
                self._count += 1
        return Progress(self.phase, self.done, self.total, message)
