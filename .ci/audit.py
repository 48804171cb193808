"""Judges a pip-audit JSON report of the locked requirements (``scripts/audit.sh``).

A known vulnerability fails the audit unless ``.ci/audit-accepted.txt`` names its id with
the reason it does not apply or cannot be fixed yet. Packages the vulnerability service
could not answer for are counted, not hidden: when it answered for none (no service
reachable, as in this project's build environment), the audit says it did not run.
Where ``BADBUZZ_AUDIT_REQUIRED=1`` says an audit must happen, anything short of every
package audited fails."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Verdict:
    lines: list[str]
    failed: bool


def read_accepted(text: str) -> dict[str, str]:
    """``ID reason...`` per line; blank lines and ``#`` comments ignored. A line without a
    reason is refused: an accepted vulnerability must say why."""
    accepted: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        vuln_id, _, reason = line.partition(" ")
        if not reason.strip():
            raise ValueError(f"line {number}: {vuln_id} needs a reason after its id")
        accepted[vuln_id] = reason.strip()
    return accepted


def judge(report: dict, accepted: dict[str, str], *, required: bool) -> Verdict:
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = len(deps) - len(skipped)
    lines: list[str] = []
    open_vulns = 0
    for dep in deps:
        for vuln in dep.get("vulns", []):
            ids = [vuln["id"], *vuln.get("aliases", [])]
            known = next((accepted[i] for i in ids if i in accepted), None)
            fixes = ", ".join(vuln.get("fix_versions", [])) or "none yet"
            status = f"accepted: {known}" if known else "NOT ACCEPTED"
            lines.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes}) {status}")
            open_vulns += known is None
    if not deps:
        lines.append("dependency audit did not run: the report lists no packages")
        return Verdict(lines, failed=required)
    if not audited:
        # pip-audit names the package after a colon; the kinds of reason are what matter.
        reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
        lines.append(
            f"dependency audit did not run: the vulnerability service answered for none of the {len(deps)} "
            f"locked packages ({'; '.join(reasons)})"
        )
        return Verdict(lines, failed=required)
    lines.append(f"dependency audit: {audited} of {len(deps)} locked packages audited, {open_vulns} vulnerabilities not accepted")
    if skipped:
        # pip-audit reports a skipped package by name only.
        lines.append("not audited: " + ", ".join(d["name"] for d in skipped))
    return Verdict(lines, failed=open_vulns > 0 or (required and bool(skipped)))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python .ci/audit.py REPORT.json ACCEPTED.txt", file=sys.stderr)
        return 2
    report_path, accepted_path = map(Path, argv)
    required = os.environ.get("BADBUZZ_AUDIT_REQUIRED") == "1"
    try:
        accepted = read_accepted(accepted_path.read_text(encoding="utf-8")) if accepted_path.exists() else {}
    except ValueError as exc:
        print(f"error: {accepted_path}: {exc}", file=sys.stderr)
        return 1
    if not report_path.exists():
        print(f"dependency audit did not run: pip-audit wrote no report (see {report_path.with_suffix('.log')})")
        return 1 if required else 0
    verdict = judge(json.loads(report_path.read_text(encoding="utf-8")), accepted, required=required)
    print("\n".join(verdict.lines))
    return 1 if verdict.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
