"""LLM repair candidates (Self-Debug / LDB style), validated like every other candidate.

The chat object is anything with `async chat(messages, *, max_tokens, temperature, n, deadline_s)
-> list[str]` (the server's providers have it); analyzers never import the server. The prompt holds
the module, the failing tests, the error, the traceback and the runtime values of locals at the
failing frames; later rounds add what the previous candidates did when run.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Protocol

from heedls.analyzers import pyparse
from heedls.analyzers.repair.edits import Candidate
from heedls.analyzers.repair.workers import TestOutcome

SYSTEM = (
    "You repair Python code so that its failing tests pass without breaking passing tests. "
    "Change as little as possible and never special-case the test inputs. "
    "Answer with the complete corrected module in one ```python code block, then one sentence "
    "explaining the fix."
)


class ChatModel(Protocol):
    async def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, n: int, deadline_s: float
    ) -> list[str]: ...


def describe_failure(test: TestOutcome, limit: int = 6) -> str:
    failure = test.failure or {}
    lines = [f"Test `{test.nodeid}` failed: {failure.get('type', 'failure')}: {str(failure.get('message', ''))[:600]}"]
    if test.timeout:
        lines.append("(it was stopped at the time limit: probably an infinite loop)")
    frames = failure.get("frames", [])[-limit:]
    for frame in frames:
        values = ", ".join(f"{k}={v}" for k, v in list(frame.get("locals", {}).items())[:10])
        lines.append(f"  at {frame.get('path')}:{frame.get('line')} in {frame.get('function')}()  locals: {values}")
    return "\n".join(lines)


def build_messages(
    module_path: str,
    source: str,
    test_source: str,
    failing: list[TestOutcome],
    feedback: list[str],
) -> list[dict[str, str]]:
    parts = [f"Module `{module_path}`:\n```python\n{source}\n```"]
    if test_source:
        parts.append(f"Tests:\n```python\n{test_source[:6000]}\n```")
    parts.append("Failing tests, errors and runtime values at the failing frames:\n" + "\n".join(describe_failure(t) for t in failing[:4]))
    if feedback:
        parts.append("Earlier attempts and what happened when the tests ran:\n" + "\n".join(feedback[-4:]))
    parts.append("Give the corrected module.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def parse_answer(answer: str, original: str) -> tuple[str | None, str]:
    """(new module text or None, explanation). Accepts a whole module or just changed functions."""
    blocks = CODE_BLOCK.findall(answer)
    if not blocks:
        return None, ""
    code = max(blocks, key=len)
    explanation = CODE_BLOCK.sub("", answer).strip().splitlines()
    expl = explanation[-1].strip() if explanation else ""
    try:
        new_tree = pyparse.parse(code)
    except SyntaxError:
        return None, expl
    try:
        old_tree = pyparse.parse(original)
    except SyntaxError:
        return code if code.endswith("\n") else code + "\n", expl
    old_defs = {n.name: n for n in old_tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    new_defs = [n for n in new_tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    top_level_other = [n for n in new_tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Expr))]
    if new_defs and all(d.name in old_defs for d in new_defs) and len(new_defs) < len(old_defs) and not top_level_other:
        # a partial answer: splice the changed definitions into the original text
        lines = original.splitlines(keepends=True)
        new_lines = code.splitlines(keepends=True)
        for d in sorted(new_defs, key=lambda d: -old_defs[d.name].lineno):
            old = old_defs[d.name]
            start = (old.decorator_list[0].lineno if old.decorator_list else old.lineno) - 1
            nstart = (d.decorator_list[0].lineno if d.decorator_list else d.lineno) - 1
            indent = len(lines[start]) - len(lines[start].lstrip())
            body = [(" " * indent + ln if ln.strip() else ln) for ln in _dedent(new_lines[nstart : d.end_lineno])]
            if body and not body[-1].endswith("\n"):
                body[-1] += "\n"
            lines[start : old.end_lineno] = body
        return "".join(lines), expl
    return code if code.endswith("\n") else code + "\n", expl


def _dedent(lines: list[str]) -> list[str]:
    widths = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
    cut = min(widths) if widths else 0
    return [ln[cut:] if ln.strip() else ln for ln in lines]


async def llm_candidates(
    chat: Any,
    module_path: str,
    source: str,
    test_source: str,
    failing: list[TestOutcome],
    feedback: list[str],
    *,
    samples: int = 3,
    deadline_s: float = 30.0,
    round_no: int = 0,
) -> list[Candidate]:
    messages = build_messages(module_path, source, test_source, failing, feedback)
    temperature = 0.2 if round_no == 0 else 0.6
    try:
        answers = await chat.chat(messages, max_tokens=2048, temperature=temperature, n=samples, deadline_s=deadline_s)
    except Exception:  # a dead endpoint costs us the model's help, never the repair  # noqa: BLE001
        return []
    out: list[Candidate] = []
    for i, answer in enumerate(answers or []):
        new, expl = parse_answer(answer, source)
        if new is None or new == source:
            continue
        out.append(
            Candidate((), "llm", expl or "model-proposed fix", 0, prior=1.0, score=1.0 - 0.01 * i, source="llm",
                      new_text=new, extra={"round": round_no})
        )
    return out
