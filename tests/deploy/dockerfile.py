"""Read a Dockerfile and lay out, in a folder, the files its COPY instructions put in the image.

Docker is not available here, so the image's file tree is rebuilt by the rules of the Dockerfile reference:
the build context less what .dockerignore excludes; a source folder's *contents* go to the destination
(`COPY a b dest/` merges a's and b's contents into dest/, it does not make dest/a and dest/b); relative
destinations start at WORKDIR; several sources need a destination ending in `/`. Whatever this module does
not model (`--from`, `--parents`, heredocs, URLs) is refused, so a new kind of instruction fails the tests
instead of passing them unread.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


class DockerfileError(ValueError):
    """The Dockerfile holds something this model cannot, or Docker would not, build."""


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword in capitals, its arguments with continuation lines joined."""

    keyword: str
    arguments: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions (comments and blank lines dropped, `\\` continuations joined)."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as Docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(pending).partition(" ")
        if "<<" in arguments and keyword.upper() in {"RUN", "COPY", "ADD"}:
            raise DockerfileError(f"line {start}: heredocs are not modelled")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    if pending:
        raise DockerfileError("the Dockerfile ends inside a continued instruction")
    return found


@dataclass(frozen=True)
class Copy:
    """A COPY or ADD: its sources, its destination and its flags."""

    sources: tuple[str, ...]
    destination: str
    flags: dict[str, str] = field(default_factory=dict)


def parse_copy(instruction: Instruction) -> Copy:
    """Read a COPY/ADD in either form: `COPY [--flag=v] src... dest` or `COPY ["src", ..., "dest"]`."""
    words = shlex.split(instruction.arguments)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    rest = " ".join(words)
    if rest.startswith("["):
        words = json.loads(instruction.arguments[instruction.arguments.index("[") :])
    if len(words) < 2:
        raise DockerfileError(
            f"line {instruction.line}: {instruction.keyword} needs a source and a destination"
        )
    for unsupported in ("from", "parents", "exclude"):
        if unsupported in flags:
            raise DockerfileError(f"line {instruction.line}: --{unsupported} is not modelled")
    return Copy(tuple(words[:-1]), words[-1], flags)


class DockerIgnore:
    """The .dockerignore rules: the last pattern that matches a path or one of its parents decides."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
            self.rules.append((keep, re.compile(_pattern_regex(pattern))))

    def excludes(self, path: str) -> bool:
        """Return whether a context-relative path (with `/`) is kept out of the build."""
        parts = PurePosixPath(path).parts
        candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
        excluded = False
        for keep, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not keep
        return excluded

    @property
    def has_exceptions(self) -> bool:
        """Return whether any rule starts with `!` (then no excluded folder can be skipped whole)."""
        return any(keep for keep, _ in self.rules)


def _pattern_regex(pattern: str) -> str:
    """Translate a .dockerignore pattern (Go's filepath.Match plus `**`) into a regular expression."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", index + 1)
            out.append(pattern[index : end + 1])  # Go's classes, `[^a-z]` included, read as a regex's
            index = end
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            out.append(re.escape(pattern[index]))
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def context_files(context: Path, ignore: DockerIgnore) -> set[str]:
    """Return the context-relative paths of the files that `docker build` sends to the builder."""
    kept: set[str] = set()
    for folder, subfolders, files in os.walk(context):
        relative = Path(folder).relative_to(context)
        if not ignore.has_exceptions:
            subfolders[:] = [name for name in subfolders if not ignore.excludes((relative / name).as_posix())]
        for name in files:
            path = (relative / name).as_posix()
            if not ignore.excludes(path):
                kept.add(path)
    return kept


@dataclass
class ImageLayout:
    """The image's files as laid out under `root`, and what was there when each RUN ran."""

    root: Path
    workdir: str = "/"
    entrypoint: list[str] | None = None
    user: str | None = None
    runs: list[tuple[str, frozenset[str]]] = field(default_factory=list)

    def path(self, image_path: str) -> Path:
        """Return where an absolute image path lies under the root."""
        return self.root / image_path.lstrip("/")

    def files(self) -> frozenset[str]:
        """Return every file of the image (as absolute image paths) laid out so far."""
        return frozenset(
            "/" + path.relative_to(self.root).as_posix() for path in self.root.rglob("*") if path.is_file()
        )


def build_layout(dockerfile: Path, context: Path, root: Path) -> ImageLayout:
    """Lay out under `root` the files the Dockerfile copies from the context."""
    ignore_file = context / ".dockerignore"
    ignore = DockerIgnore(ignore_file.read_text() if ignore_file.exists() else "")
    sent = context_files(context, ignore)
    layout = ImageLayout(root)
    stages = 0
    for instruction in instructions(dockerfile.read_text()):
        keyword = instruction.keyword
        if keyword == "FROM":
            stages += 1
            if stages > 1:
                raise DockerfileError(f"line {instruction.line}: multi-stage builds are not modelled")
        elif keyword == "WORKDIR":
            layout.workdir = str(PurePosixPath(layout.workdir) / instruction.arguments)
            layout.path(layout.workdir).mkdir(parents=True, exist_ok=True)
        elif keyword in {"COPY", "ADD"}:
            _copy(parse_copy(instruction), instruction, context, sent, layout)
        elif keyword == "RUN":
            layout.runs.append((instruction.arguments, layout.files()))
        elif keyword == "ENTRYPOINT":
            exec_form = instruction.arguments.startswith("[")
            layout.entrypoint = (
                json.loads(instruction.arguments) if exec_form else ["/bin/sh", "-c", instruction.arguments]
            )
        elif keyword == "USER":
            layout.user = instruction.arguments
    return layout


def _copy(copy: Copy, instruction: Instruction, context: Path, sent: set[str], layout: ImageLayout) -> None:
    destination = str(PurePosixPath(layout.workdir) / copy.destination)
    into_folder = copy.destination.endswith("/") or copy.destination in {".", "./"}
    matched: list[str] = []
    for source in copy.sources:
        if "://" in source:
            raise DockerfileError(f"line {instruction.line}: remote sources are not modelled")
        pattern = os.path.normpath(source)
        if pattern == ".." or pattern.startswith("../"):
            raise DockerfileError(f"line {instruction.line}: {source} lies outside the build context")
        found = _sources(pattern, sent)
        if not found:
            raise DockerfileError(f"line {instruction.line}: {source} is not in the build context")
        matched += found
    if len(matched) > 1 and not into_folder:
        raise DockerfileError(f"line {instruction.line}: several sources need a destination ending in '/'")
    for source in matched:
        prefix = "" if source == "." else source + "/"
        members = sorted(path for path in sent if path.startswith(prefix))
        if source == "." or members:  # a folder: its contents go to the destination
            for member in members:
                _place(context / member, layout.path(destination) / member[len(prefix) :])
        elif into_folder:
            _place(context / source, layout.path(destination) / PurePosixPath(source).name)
        else:
            _place(context / source, layout.path(destination))


def _sources(pattern: str, sent: set[str]) -> list[str]:
    """Return the context paths (files or folders holding sent files) that a COPY source names."""
    if pattern == ".":
        return ["."] if sent else []
    folders = {str(parent) for path in sent for parent in PurePosixPath(path).parents if str(parent) != "."}
    regex = re.compile(_pattern_regex(pattern))
    return sorted(path for path in sent | folders if regex.fullmatch(path))


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
