"""The house rules that can be measured: small files, a short README, no citations of a design file that is not in
the repository, and no history words (sessions, issue numbers) in code, configs or docs."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
TEXT_SUFFIXES = {".py", ".yaml", ".md", ".toml", ".sh", ".cfg", ".txt"}
HISTORY = re.compile(r"\b(session|sessions)\b|\bissue[ -]?#?\d+|\(issue\b", re.IGNORECASE)


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    files = [ROOT / f for f in out if (ROOT / f).suffix in TEXT_SUFFIXES and (ROOT / f).is_file()]
    return [f for f in files if "benchmarks/results" not in f.as_posix() and "tests/fixtures" not in f.as_posix()]


def test_no_file_is_over_400_lines():
    long = {str(f.relative_to(ROOT)): n for f in tracked_text_files() if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) < 200


def test_design_is_cited_by_its_docs_path():
    cites = [str(f.relative_to(ROOT)) for f in tracked_text_files() if "DESIGN" + ".md" in f.read_text()]
    assert cites == []
    assert (ROOT / "docs" / "design.md").is_file()


def test_no_history_words_in_code_configs_or_docs():
    found = {}
    for f in tracked_text_files():
        if f == Path(__file__).resolve():
            continue
        hits = [line.strip()[:80] for line in f.read_text().splitlines() if HISTORY.search(line)]
        if hits:
            found[str(f.relative_to(ROOT))] = hits[:3]
    assert found == {}


def test_the_history_pattern_catches_what_it_should():
    assert HISTORY.search("measured in the fifth session") and HISTORY.search("see issue 9")
    assert HISTORY.search("(issue 7's target)") and not HISTORY.search("an issue with the data")
