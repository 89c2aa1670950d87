"""Where the suite's files are, for test modules at any depth of tests/."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent
