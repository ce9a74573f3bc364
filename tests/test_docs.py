"""The documentation: the MkDocs site builds with no warning, the README stays a
short front page whose links all resolve, and the site's benchmark tables are
those of benchmarks/README.md.

Imports neither fiftyone nor fiftyone_csl: these tests read files only.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
README_MAX_BYTES = 12_500


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _prose(markdown):
    """The text outside fenced code blocks and inline code spans, where links live."""
    lines, fence = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            lines.append(line)
    return re.sub(r"``.*?``|`[^`\n]*`", "", "\n".join(lines))


def _links(markdown):
    """Targets of inline links and images: [text](target) and ![alt](target)."""
    return re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", _prose(markdown))


def _github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        print(proc.stdout)
        print(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(os.path.join(tmp_path, "index.html"))


def test_readme_is_a_short_front_page():
    size = os.path.getsize(README)
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/ (at most {README_MAX_BYTES})"


def test_every_relative_link_in_the_readme_points_to_an_existing_file():
    text = _read(README)
    anchors = {_github_anchor(m) for m in re.findall(r"^#+\s+(.*)$", _prose(text), flags=re.M)}
    targets = _links(text)
    assert targets, "no links found in README.md"
    missing = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        path = path.split("?")[0]
        if not path:  # a heading of the README itself
            if anchor not in anchors:
                missing.append(target)
            continue
        if os.path.isabs(path) or not os.path.exists(os.path.join(ROOT, path)):
            missing.append(target)
    assert not missing, f"README.md links to files or headings that do not exist: {missing}"


def test_the_sites_benchmark_tables_are_those_of_benchmarks_readme():
    # docs/benchmarks.md repeats headline tables of benchmarks/README.md (MkDocs cannot link
    # outside docs/); a row changed in one place only would make the two disagree
    site = _read(os.path.join(ROOT, "docs", "benchmarks.md"))
    full = set(_read(os.path.join(ROOT, "benchmarks", "README.md")).split("\n"))
    rows = [line for line in site.split("\n") if line.startswith("|") and not re.match(r"^\|[-:| ]+\|$", line)]
    assert rows
    stale = [row for row in rows if row not in full]
    assert not stale, f"rows of docs/benchmarks.md not in benchmarks/README.md: {stale}"


def test_every_test_the_reliability_table_cites_exists():
    import re

    text = open(os.path.join(ROOT, "docs", "reliability.md")).read()
    missing = []
    for cell in re.findall(r"^\|.*\| ([^|]*`[^|]*)\|$", text, flags=re.M):
        current = None
        for ref in re.findall(r"`([^`]+)`", cell):
            path, _, name = ref.partition("::")
            if path.endswith(".py"):
                current = path
            if not name and not path.endswith(".py"):
                continue
            source = open(os.path.join(ROOT, "tests", current)).read() if current else ""
            base = name.split("[")[0]
            if base and not re.search(rf"^def {re.escape(base)}\(", source, flags=re.M):
                missing.append(ref)
    assert not missing, f"the Reliability table cites tests that do not exist: {missing}"
