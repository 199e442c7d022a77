"""Run the conformance cases against a target and report (``qstack conformance``).

:func:`select` picks the cases (``strict`` adds the SHOULDs, ``keyword``
keeps those whose id or title contains it); :func:`run` runs them one after
another against one target, each within ``case_timeout_s``, and returns a
:class:`Result` per case; :func:`report` prints them (pass/fail/skip, with
expected and actual for a failure) and :func:`write_junit` writes a JUnit
XML file. Exit status of the command: 0 every case passed (or was skipped),
1 a case failed, 2 bad input.
"""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import trio

from qstack.conformance.cases import CASES, Case
from qstack.conformance.harness import CaseFailed, CaseSkipped, Harness
from qstack.core.errors import QStackError
from qstack.emu.runfile import RunFile

__all__ = ["Result", "select", "run", "report", "write_junit"]


@dataclass
class Result:
    """How one case went: ``outcome`` "pass", "fail" or "skip"; for a
    failure ``expected`` and ``actual``; for a skip the reason in
    ``actual``; ``seconds`` its wall time (s)."""

    case: Case
    outcome: str
    expected: str = ""
    actual: str = ""
    seconds: float = 0.0


def select(strict: bool = False, keyword: str | None = None) -> list[Case]:
    """The cases to run: the MUSTs (and the SHOULDs if ``strict``) whose id
    or title contains ``keyword`` (case-insensitive; None: all)."""
    key = (keyword or "").lower()
    return [c for c in CASES if (strict or not c.should)
            and (not key or key in c.id.lower() or key in c.title.lower())]


async def run(host: str, port: int, secret: bytes, cases: list[Case],
              run_file: RunFile | None = None, timeout_s: float = 2.0,
              case_timeout_s: float = 15.0, on_result=None) -> list[Result]:
    """Run ``cases`` in order against the daemon at ``host:port``.
    ``timeout_s`` (s): how long a case waits for each answer;
    ``case_timeout_s`` (s): the most one case may take. ``on_result(result)``
    is called as each finishes. A target that refuses the tester outright
    (wrong secret, not listening) fails every case with that reason."""
    results: list[Result] = []

    def done(r: Result) -> None:
        results.append(r)
        if on_result is not None:
            on_result(r)

    async with trio.open_nursery() as nursery:
        harness = Harness(host, port, secret, run_file, timeout_s)
        try:
            with trio.fail_after(10.0):
                await harness.start(nursery)
        except (CaseFailed, QStackError, OSError, trio.TooSlowError) as exc:
            expected = getattr(exc, "expected", "the target accepts the tester")
            actual = getattr(exc, "actual", None) or f"{type(exc).__name__}: {exc}"
            for c in cases:
                done(Result(c, "fail", expected, f"(set-up) {actual}"))
            nursery.cancel_scope.cancel()
            return results
        for c in cases:
            start = time.monotonic()
            try:
                with trio.fail_after(case_timeout_s):
                    await c.fn(harness)
                r = Result(c, "pass")
            except CaseFailed as exc:
                r = Result(c, "fail", exc.expected, exc.actual)
            except CaseSkipped as exc:
                r = Result(c, "skip", actual=str(exc))
            except trio.TooSlowError:
                r = Result(c, "fail", f"the case done within {case_timeout_s:g} s",
                           "it timed out")
            except (QStackError, OSError) as exc:
                r = Result(c, "fail", "the exchange the case runs",
                           f"{type(exc).__name__}: {exc}")
            r.seconds = time.monotonic() - start
            done(r)
        nursery.cancel_scope.cancel()
    return results


def report_line(r: Result) -> str:
    """One result as the command prints it (a failure on three lines)."""
    tag = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[r.outcome]
    level = " (SHOULD)" if r.case.should else ""
    line = f"{tag}  {r.case.id:<18} {r.case.title}{level}"
    if r.outcome == "fail":
        line += f"\n      expected: {r.expected}\n      actual:   {r.actual}"
    elif r.outcome == "skip":
        line += f"\n      skipped:  {r.actual}"
    return line


def report(results: list[Result], out: TextIO) -> None:
    """The summary line after the cases."""
    n = {k: sum(1 for r in results if r.outcome == k) for k in ("pass", "fail", "skip")}
    print(f"\n{len(results)} cases: {n['pass']} passed, {n['fail']} failed, "
          f"{n['skip']} skipped", file=out)


def write_junit(results: list[Result], path: str | Path, target: str) -> None:
    """A JUnit XML report: one testsuite, one testcase per case
    (``classname`` the spec section, ``name`` the case id)."""
    suite = ET.Element("testsuite", name=f"qstack conformance {target}",
                       tests=str(len(results)),
                       failures=str(sum(r.outcome == "fail" for r in results)),
                       skipped=str(sum(r.outcome == "skip" for r in results)),
                       errors="0", time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        tc = ET.SubElement(suite, "testcase", classname=r.case.section, name=r.case.id,
                           time=f"{r.seconds:.3f}")
        ET.SubElement(tc, "system-out").text = r.case.title
        if r.outcome == "fail":
            f = ET.SubElement(tc, "failure", message=f"expected {r.expected}")
            f.text = f"expected: {r.expected}\nactual: {r.actual}"
        elif r.outcome == "skip":
            ET.SubElement(tc, "skipped", message=r.actual)
    ET.ElementTree(suite).write(str(path), encoding="utf-8", xml_declaration=True)
