"""LLM candidates from a loopback OpenAI-compatible server that returns scripted patches."""

from __future__ import annotations

from pathlib import Path

from heedls.analyzers.repair.engine import RepairRequest, repair
from heedls.server.cli_fix import ChatAdapter
from heedls.server.config import ProviderConfig

from tests.support.fake_llm_server import FakeLLMServer

MODULE = '''def fizzbuzz(n):
    if n % 3 == 0:
        return "Fizz"
    return str(n)
'''
TESTS = '''from fb import fizzbuzz


def test_plain():
    assert fizzbuzz(7) == "7"


def test_fizz():
    assert fizzbuzz(9) == "Fizz"


def test_buzz():
    assert fizzbuzz(10) == "Buzz"


def test_fizzbuzz():
    assert fizzbuzz(30) == "FizzBuzz"
'''
WRONG = '''Try this:
```python
def fizzbuzz(n):
    if n % 5 == 0:
        return "Buzz"
    if n % 3 == 0:
        return "Fizz"
    return str(n)
```
Added the Buzz case.
'''
RIGHT = '''```python
def fizzbuzz(n):
    if n % 15 == 0:
        return "FizzBuzz"
    if n % 5 == 0:
        return "Buzz"
    if n % 3 == 0:
        return "Fizz"
    return str(n)
```
Handle multiples of 15 first, then 5 and 3.
'''


def test_llm_candidates_are_validated_and_iterated_with_feedback(tmp_path: Path) -> None:
    (tmp_path / "fb.py").write_text(MODULE)
    (tmp_path / "test_fb.py").write_text(TESTS)
    with FakeLLMServer() as server:
        server.script_chat(WRONG, RIGHT)
        chat = ChatAdapter(ProviderConfig(name="openai", endpoint=server.url, model="fake", mode="chat"))
        result = repair(RepairRequest(tmp_path / "fb.py", [tmp_path / "test_fb.py"], budget_s=40, chat=chat,
                                      llm_samples=1, llm_rounds=3))
        requests = server.requests_to("/v1/chat/completions")
    assert result.fixed, result.explanation
    assert result.operator == "llm"
    assert "FizzBuzz" in (result.new_text or "")
    assert (tmp_path / "fb.py").read_text() == MODULE  # the user's file is untouched
    assert len(requests) >= 2
    first = requests[0].body["messages"][-1]["content"]
    assert "fizzbuzz(30)" in first or "FizzBuzz" in first  # the failing test and its error are in the prompt
    assert "def fizzbuzz" in first
    second = requests[1].body["messages"][-1]["content"]
    assert "Earlier attempts" in second and "still failed" in second  # feedback from running the wrong patch


def test_unvalidated_llm_answers_are_never_offered(tmp_path: Path) -> None:
    (tmp_path / "fb.py").write_text(MODULE)
    (tmp_path / "test_fb.py").write_text(TESTS)
    with FakeLLMServer() as server:
        server.script_chat(WRONG, WRONG, WRONG)
        chat = ChatAdapter(ProviderConfig(name="openai", endpoint=server.url, model="fake", mode="chat"))
        result = repair(RepairRequest(tmp_path / "fb.py", [tmp_path / "test_fb.py"], budget_s=8, chat=chat,
                                      llm_samples=1, llm_rounds=2))
    assert not result.fixed and result.patch == "" and result.new_text is None
