"""Patches as `git diff` writes them: parsed, checked and applied exactly as `git apply` does."""

from __future__ import annotations

import pytest

from app.pipelines.fix.ci_logs import collapse_repeats, log_lines, trim_log
from app.pipelines.fix.patches import (
    HunkMismatch, PatchError, TreeEntry, apply_patch, check_patch, parse_patch,
)

BASE_FILES = {
    "src/calc.py": "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(30)),
    "src/util.py": "A = 1\nB = 2\nC = 3",  # no newline at the end
    "old_name.txt": "moved\ncontent\n",
    "gone.txt": "bye\n",
    "tools/run.sh": "#!/bin/sh\necho run\n",
    "crlf.txt": "one\r\ntwo\r\nthree\r\n",
}


def tree_of(repo) -> dict[str, TreeEntry]:
    entries = {}
    for line in repo.git("ls-tree", "-r", "-t", "HEAD").splitlines():
        meta, path = line.split("\t", 1)
        mode, kind, sha = meta.split()
        entries[path] = TreeEntry(mode, kind, sha)
    return entries


def apply_like_prmedic(repo, patch: str) -> dict[str, bytes | None]:
    files = parse_patch(patch)
    tree = tree_of(repo)
    assert check_patch(files, tree, allow_workflows=False, patch_bytes=len(patch), max_patch_bytes=10**6) == []
    originals = {f.old_path: repo.show(f.old_path) for f in files if f.old_path}
    return {c.path: c.content for c in apply_patch(files, originals, tree)}


def test_every_kind_of_change_matches_git_apply(git_repo):
    repo = git_repo(BASE_FILES)
    repo.chmod_x("tools/run.sh")
    base = repo.commit(message="exec bit")
    calc = BASE_FILES["src/calc.py"].replace("x + 3\n", "x - 3\n").replace("x + 27\n", "x * 27\n")
    repo.write({"src/calc.py": calc, "src/util.py": "A = 1\nB = 20\nC = 3\n", "gone.txt": None,
                "docs/new file.md": "# new\n\nwith a space in its name\n", "tools/run.sh": "#!/bin/sh\necho ran\n",
                "crlf.txt": "one\r\n2\r\nthree\r\n", "empty.txt": ""})
    (repo.path / "renamed").mkdir()
    repo.git("mv", "old_name.txt", "renamed/new_name.txt")
    repo.write({"renamed/new_name.txt": "moved\ncontent, changed\n"})
    patch = repo.git("diff", "--cached", "-M")
    expected_tree = repo.git("write-tree").strip()
    repo.git("reset", "-q", "--hard", base)

    changes = apply_like_prmedic(repo, patch)
    repo.git("apply", "--index", "-", input=patch.encode())
    assert repo.git("write-tree").strip() == expected_tree
    for path, content in changes.items():
        if content is None:
            assert not (repo.path / path).exists()
        else:
            assert (repo.path / path).read_bytes() == content, path
    assert {p for p, c in changes.items() if c is None} == {"gone.txt", "old_name.txt"}


def test_a_hunk_that_does_not_apply_shows_the_hunk_and_the_lines_found(git_repo):
    repo = git_repo(BASE_FILES)
    patch = ("diff --git a/src/calc.py b/src/calc.py\n--- a/src/calc.py\n+++ b/src/calc.py\n"
             "@@ -4,3 +4,3 @@\n def f1(x):\n-    return x + 100\n+    return x + 101\n \n")
    with pytest.raises(HunkMismatch) as err:
        apply_like_prmedic(repo, patch)
    text = str(err.value)
    assert "Hunk 1 of 1 for `src/calc.py` does not apply" in text
    assert "-    return x + 100" in text  # the hunk
    assert "     5|     return x + 1" in text  # what the file really has there
    assert "first non-blank old line occurs at line(s) 4" in text


def test_hunks_are_found_at_an_offset_like_git_apply(git_repo):
    repo = git_repo(BASE_FILES)
    patch = ("--- a/src/calc.py\n+++ b/src/calc.py\n"
             "@@ -10,3 +10,3 @@\n def f5(x):\n-    return x + 5\n+    return x + 55\n \n")
    changes = apply_like_prmedic(repo, patch)
    assert b"return x + 55\n" in changes["src/calc.py"]
    repo.git("apply", "-", input=patch.encode())
    assert (repo.path / "src/calc.py").read_bytes() == changes["src/calc.py"]


def test_stripped_trailing_blank_context_is_tolerated(git_repo):
    repo = git_repo(BASE_FILES)
    patch = "--- a/src/calc.py\n+++ b/src/calc.py\n@@ -1,3 +1,3 @@\n def f0(x):\n-    return x + 0\n+    return x\n "
    changes = apply_like_prmedic(repo, patch.strip())
    assert changes["src/calc.py"].startswith(b"def f0(x):\n    return x\n\ndef f1")


@pytest.mark.parametrize("path, reason", [
    (".github/workflows/ci.yml", "workflow"),
    (".git/config", "inside `.git/`"),
    ("src/.GIT/hooks/post-checkout", "inside `.git/`"),
    ("../outside.txt", "leaves the repository"),
    ("/etc/passwd", "not a relative path"),
])
def test_forbidden_paths_are_refused(path, reason):
    patch = f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"
    problems = check_patch(parse_patch(patch), {}, allow_workflows=False, patch_bytes=len(patch),
                           max_patch_bytes=10**6)
    assert any(reason in p for p in problems), problems


def test_workflows_may_be_changed_when_the_config_allows_it():
    patch = "--- /dev/null\n+++ b/.github/workflows/ci.yml\n@@ -0,0 +1 @@\n+on: push\n"
    assert check_patch(parse_patch(patch), {}, allow_workflows=True, patch_bytes=1, max_patch_bytes=1000) == []


def test_binary_symlink_mode_and_size_tricks_are_refused():
    tree = {"link": TreeEntry("120000", "blob", "a" * 40), "app.py": TreeEntry("100644", "blob", "b" * 40),
            "vendor": TreeEntry("160000", "commit", "c" * 40)}
    cases = {
        "diff --git a/img.png b/img.png\nnew file mode 100644\nBinary files /dev/null and b/img.png differ\n":
            "binary patches",
        "diff --git a/evil b/evil\nnew file mode 120000\n--- /dev/null\n+++ b/evil\n@@ -0,0 +1 @@\n+/etc\n":
            "symlink or submodule",
        "diff --git a/app.py b/app.py\nold mode 100644\nnew mode 100755\n": "changing a file's mode",
        "--- a/link\n+++ b/link\n@@ -1 +1 @@\n-target\n+/etc/shadow\n": "is a symlink",
        "--- /dev/null\n+++ b/link/inner.py\n@@ -0,0 +1 @@\n+x\n": "is a symlink, not a directory",
        "--- /dev/null\n+++ b/vendor/x.c\n@@ -0,0 +1 @@\n+x\n": "is a submodule",
    }
    for patch, reason in cases.items():
        problems = check_patch(parse_patch(patch), tree, allow_workflows=False, patch_bytes=len(patch),
                               max_patch_bytes=10**6)
        assert any(reason in p for p in problems), (patch, problems)
    big = "--- /dev/null\n+++ b/big.txt\n@@ -0,0 +1 @@\n+x\n"
    assert any("at most 10" in p for p in check_patch(parse_patch(big), {}, allow_workflows=False,
                                                       patch_bytes=5000, max_patch_bytes=10))


def test_unreadable_patches_say_where():
    with pytest.raises(PatchError, match="no file changes"):
        parse_patch("just some text\n")
    with pytest.raises(PatchError, match="announces 3 old and 3 new lines"):
        parse_patch("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n+d\n")


def test_logs_are_trimmed_to_the_failure_with_line_numbers():
    raw = ["2024-05-01T10:00:00.1234567Z ##[group]Run actions/checkout@v4", "2024-05-01T10:00:00.1Z ##[endgroup]"]
    raw += [f"2024-05-01T10:00:01.0000000Z installing package {i}" for i in range(3000)]
    raw += ["2024-05-01T10:00:02.0Z downloading..."] * 50
    raw += ["2024-05-01T10:00:03.0Z ##[group]Run pytest -q", "2024-05-01T10:00:03.0Z pytest -q",
            "2024-05-01T10:00:03.0Z ##[endgroup]"]
    raw += [f"2024-05-01T10:00:04.0Z tests/test_{i}.py ." for i in range(500)]
    raw += ["2024-05-01T10:00:05.0Z E   AssertionError: assert 5 == 4", "2024-05-01T10:00:05.0Z FAILED tests/t.py"]
    raw += ["2024-05-01T10:00:06.0Z ##[error]Process completed with exit code 1."]
    lines = log_lines("\n".join(raw))
    assert lines[0] == "##[group]Run actions/checkout@v4"
    out = trim_log(lines, 1500, failed_steps=["Run pytest -q"], ref="job_id=9")
    assert len(out) <= 1500 * 4 + 2000
    assert "##[group]Run pytest -q" in out and "E   AssertionError: assert 5 == 4" in out
    assert "Process completed with exit code 1." in out
    assert "installing package 1500" not in out
    assert "left out (read_ci_log job_id=9 start_line=" in out
    collapsed = collapse_repeats([(i, "same") for i in range(1, 6)])
    assert collapsed == [(1, "same"), (1, "… (the line above repeated 4 more times)")]
