"""The dependency audit's verdict on pip-audit reports."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("audit", Path(__file__).resolve().parents[2] / ".ci" / "audit.py")
audit = importlib.util.module_from_spec(_spec)
sys.modules["audit"] = audit  # dataclasses look their module up there
_spec.loader.exec_module(audit)
Verdict, judge, main, read_accepted = audit.Verdict, audit.judge, audit.main, audit.read_accepted

VULN = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "fix_versions": ["2.0.1"], "description": "x"}


def report(*deps: dict) -> dict:
    return {"dependencies": list(deps), "fixes": []}


def test_a_finding_fails_unless_accepted_by_its_id_or_an_alias():
    r = report({"name": "lib", "version": "2.0.0", "vulns": [VULN]}, {"name": "ok", "version": "1.0", "vulns": []})
    failed = judge(r, {}, required=False)
    assert failed.failed
    assert failed.lines == [
        "lib 2.0.0: PYSEC-2099-1 (fixed in 2.0.1) NOT ACCEPTED",
        "dependency audit: 2 of 2 locked packages audited, 1 vulnerabilities not accepted",
    ]
    accepted = judge(r, {"CVE-2099-0001": "only the unused CLI is affected"}, required=False)
    assert not accepted.failed
    assert accepted.lines[0] == "lib 2.0.0: PYSEC-2099-1 (fixed in 2.0.1) accepted: only the unused CLI is affected"


def test_no_answer_from_the_service_is_reported_as_not_run_and_fails_only_when_required():
    r = report(*({"name": f"p{i}", "skip_reason": f"Dependency not found on PyPI and could not be audited: p{i} (1)"} for i in range(3)))
    lenient = judge(r, {}, required=False)
    assert not lenient.failed
    assert lenient.lines == [
        "dependency audit did not run: the vulnerability service answered for none of the 3 locked packages "
        "(Dependency not found on PyPI and could not be audited)"
    ]
    assert judge(r, {}, required=True).failed


def test_partly_audited_names_what_was_not_and_is_not_enough_when_required():
    r = report({"name": "a", "version": "1", "vulns": []}, {"name": "b", "skip_reason": "Dependency not found on PyPI: b (2)"})
    verdict = judge(r, {}, required=False)
    assert not verdict.failed
    assert verdict.lines == ["dependency audit: 1 of 2 locked packages audited, 0 vulnerabilities not accepted", "not audited: b"]
    assert judge(r, {}, required=True).failed


def test_an_empty_report_is_no_audit():
    assert judge(report(), {}, required=False) == Verdict(["dependency audit did not run: the report lists no packages"], failed=False)
    assert judge(report(), {}, required=True).failed


def test_an_accepted_line_must_give_its_reason():
    assert read_accepted("# comment\n\nGHSA-1 waiting for 3.2 upstream\n") == {"GHSA-1": "waiting for 3.2 upstream"}
    with pytest.raises(ValueError, match="line 2: GHSA-2 needs a reason"):
        read_accepted("GHSA-1 fine\nGHSA-2\n")


def test_command_exit_codes(tmp_path, monkeypatch, capsys):
    accepted = tmp_path / "accepted.txt"
    accepted.write_text("")
    found = tmp_path / "audit.json"
    found.write_text(json.dumps(report({"name": "lib", "version": "2.0.0", "vulns": [VULN]})))
    assert main([str(found), str(accepted)]) == 1
    missing = tmp_path / "none.json"
    monkeypatch.delenv("BADBUZZ_AUDIT_REQUIRED", raising=False)
    assert main([str(missing), str(accepted)]) == 0
    monkeypatch.setenv("BADBUZZ_AUDIT_REQUIRED", "1")
    assert main([str(missing), str(accepted)]) == 1
    assert "pip-audit wrote no report" in capsys.readouterr().out
    assert main([str(found)]) == 2
