"""Check results: a verification runs every check it can and reports them all.

A verification never stops at the first failure (operators need the whole
picture), but any failure means the verdict is a failure: there is no check
whose exception passes as success.

Every verifier the appraisal calls has one shape: it takes the :class:`CheckRunner`
first, records each of its checks (and warnings) in it, and returns what it
established, or None when that could not be established:
``verify_quote``, ``verify_replay``, ``check_integrity``, ``appraise_boot``,
``verify_ima_replay``, ``appraise_ima``, ``verify_pcrs``, ``verify_certify``,
``verify_csr``. Below them, single predicates (``check_replay_matches``,
``evaluate_pcrs``, ``check_csr``, ``replay_ima``...) raise their
:class:`EvidenceError`, as parsers raise on malformed input; a verifier records it
with :meth:`CheckRunner.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from identity.errors import EvidenceError

T = TypeVar("T")


class Check(NamedTuple):
    """One named check and its outcome; ``code`` is set when it failed."""

    name: str
    passed: bool
    code: str | None = None
    detail: str = ""
    skipped: bool = False

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "passed": self.passed}
        if self.code:
            out["code"] = self.code
        if self.detail:
            out["detail"] = self.detail
        if self.skipped:
            out["skipped"] = True
        return out


_PASSED: dict[str, Check] = {}  # passing checks are immutable: one instance per name


@dataclass(slots=True)
class CheckRunner:
    """Runs checks, records each outcome, and never lets a failure pass silently."""

    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def run(self, name: str, fn: Callable[[], T]) -> T | None:
        """Run ``fn``; a raised :class:`EvidenceError` is recorded as a failed check."""
        try:
            value = fn()
        except EvidenceError as exc:
            self.checks.append(Check(name, False, exc.code, exc.detail))
            return None
        self.checks.append(Check(name, True))
        return value

    def record(self, name: str, failure: EvidenceError | None) -> bool:
        """Record an already-decided check: ``failure`` is None when it passed.

        The hot path's form: no closure, and the error is built only on failure.
        """
        if failure is None:
            passed = _PASSED.get(name)
            if passed is None:
                passed = _PASSED[name] = Check(name, True)
            self.checks.append(passed)
            return True
        self.checks.append(Check(name, False, failure.code, failure.detail))
        return False

    def check(self, name: str, fn: Callable[[], object]) -> bool:
        """Run ``fn`` as a check and say whether it passed."""
        before = len(self.checks)
        self.run(name, fn)
        return self.checks[before].passed

    def fail(self, name: str, exc: EvidenceError) -> None:
        self.checks.append(Check(name, False, exc.code, exc.detail))

    def skip(self, name: str, because: str) -> None:
        """Record a check that could not run; a skipped check counts as failed."""
        self.checks.append(
            Check(name, False, "check.skipped", f"not run: {because}", skipped=True)
        )

    def extend(self, other: CheckRunner) -> None:
        self.checks.extend(other.checks)
        self.warnings.extend(other.warnings)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def reason_codes(self) -> list[str]:
        """Codes of failed checks, skipped ones left out (their cause is listed)."""
        seen: list[str] = []
        for c in self.checks:
            if not c.passed and not c.skipped and c.code and c.code not in seen:
                seen.append(c.code)
        return seen
