"""The repository stands alone: no tracked file points at a path outside it.

What the project relies on is written in its own docs/, with public web addresses. A link
or comment that names a folder beside the checkout, or a path on one machine, is missing
in every other clone.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile(
    "|".join(
        [
            re.escape(".." + "/shared"),
            re.escape("shared" + "/reference"),
            # The notes beside the checkout, cited by their names.
            r"\breference/[\w-]+\.md",
            r"\b(?:decisions|runbase-contract|platform-anchors|open-models|feasibility|"
            r"style-anchors)\.md\b",
            # Absolute paths of one machine.
            r"(?<![\w.:/-])/(?:work|home|root|Users|mnt)/",
        ]
    )
)
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError):
        return None  # binary (a PNG), or deleted in the work tree


def test_no_tracked_file_mentions_a_path_outside_the_repository() -> None:
    found = []
    files = tracked_files()
    assert len(files) > 50 and ROOT / "README.md" in files
    for path in files:
        text = _text(path)
        for number, line in enumerate((text or "").splitlines(), start=1):
            if match := OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not found, "\n".join(found)


def test_markdown_links_stay_inside_the_repository() -> None:
    broken = []
    for path in tracked_files():
        if path.suffix != ".md":
            continue
        for target in MARKDOWN_LINK.findall(_text(path) or ""):
            if re.match(r"[a-z]+:|#", target):  # a web address, mailto:, an anchor
                continue
            linked = (path.parent / target.split("#")[0]).resolve()
            if not linked.is_relative_to(ROOT) or not linked.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)
