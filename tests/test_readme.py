"""The README is a front page that stays true: at most 150 lines, and its Algorithm 1 snippet is the code.

Every line of the snippet (comments and spacing aside) must be a line of ``mjxmeta/algo/trainer.py``, and
every method or module function it calls must exist there.
"""

from __future__ import annotations

import re
from pathlib import Path

from mjxmeta.algo import estimators
from mjxmeta.algo.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _code(line: str) -> str:
    return " ".join(line.split("#", 1)[0].split())


def _snippet() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Algorithm 1, as the code reads.*?```python\n(.*?)```", text, re.S)
    assert block, "README has no Algorithm 1 snippet"
    return [_code(line) for line in block.group(1).splitlines() if _code(line)]


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_algorithm_snippet_is_the_trainers_code():
    source = {_code(line) for line in (ROOT / "mjxmeta/algo/trainer.py").read_text().splitlines()}
    lines = _snippet()
    assert len(lines) >= 7
    missing = [line for line in lines if line not in source]
    assert not missing, f"README lines not in trainer.py: {missing}"
    calls = re.findall(r"\b(self|estimators)\.(\w+)\(", "\n".join(lines))
    owners = {"self": Trainer, "estimators": estimators}
    assert {name for _, name in calls} >= {"rollout_d0", "look_ahead", "returns_and_d1", "meta_rewards",
                                          "teacher_update", "insert", "student_update"}
    for owner, name in calls:
        assert callable(getattr(owners[owner], name, None)), f"{owner}.{name} is not in the code"


def test_readme_links_exist():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)", text):
        assert (ROOT / target).exists(), target
