"""The README's pointers into the repository: every path it quotes under one of our top-level
folders exists, so a section that moves (the old pin's tables went to results/published/HISTORY.md)
or a file that is renamed cannot leave the README sending a reader to nothing. Paths of the
reference repositories it cites (PANet's `util/metric.py`, AMP's `ptsemseg/...`) and examples of a
user's own package are outside these folders and not checked."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("bench", "methods", "backbones", "pseudo_labels", "tests", "benchmarks", "grids", "results")


def quoted_repo_paths(text: str) -> set[str]:
    """Every token of a `code span` or a code block that starts with one of our top-level folders,
    without a trailing ':line' or '::test' and without the punctuation that closes a sentence;
    placeholders (an upper-case part, a glob, `<key>`) are not paths."""
    found = set()
    fences = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)  # code blocks first: their ``` would pair off the spans
    spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    for span in fences + spans:
        for token in re.split(r"[\s,;()=]+", span):
            token = token.split("::")[0].split(":")[0].rstrip(".")
            placeholder = any(part.isupper() for part in token.split("/"))  # results/published/NAME
            if token.split("/")[0] in OURS and "/" in token and not placeholder and not set("*<{") & set(token):
                found.add(token)
    return found


def missing_paths(paths: set[str]) -> list[str]:
    return sorted(p for p in paths if not (ROOT / p).exists())


def test_every_repository_path_the_readme_quotes_exists():
    paths = quoted_repo_paths((ROOT / "README.md").read_text())
    # the extraction must see the README's pointers, or this test passes on nothing
    assert {"results/published/HISTORY.md", "methods/pfenet.py", "benchmarks/pfenet_fingerprint.py", "tests/test_published.py"} <= paths
    missing = missing_paths(paths)
    assert not missing, "the README points at paths that do not exist: " + ", ".join(missing)


def test_the_path_check_catches_a_pointer_to_a_moved_file():
    text = "see `results/published/HISTORY.md` and `methods/pfenet_old.py:12`, not PANet's `util/metric.py`."
    paths = quoted_repo_paths(text)
    assert paths == {"results/published/HISTORY.md", "methods/pfenet_old.py"}
    assert missing_paths(paths) == ["methods/pfenet_old.py"]
