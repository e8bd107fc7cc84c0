"""Findings on systemd: is it init, which version, did logind put us in a session scope
(and what that did to our CPUs), and do transient scopes with Delegate=yes work."""

from __future__ import annotations

from tiered_run.inputs.units import format_cpus
from tiered_run.model.facts import Facts
from tiered_run.model.findings import Finding, Severity

AREA = "systemd"


def systemd_findings(facts: Facts) -> list[Finding]:
    systemd = facts.systemd
    if not systemd.running:
        return [
            Finding(
                "systemd.init",
                AREA,
                Severity.NOTE,
                f"PID 1 is {systemd.pid1 or 'unknown'}, not systemd",
                "no slices, scopes or login sessions: the systemd backend is out, and runs "
                "are made below tiered-run's own cgroups; nothing moves them elsewhere",
            )
        ]
    version = f"systemd {systemd.version}" if systemd.version else "systemd"
    found = [
        Finding(
            "systemd.init",
            AREA,
            Severity.OK,
            f"{version} is PID 1; tiered-run runs in {systemd.unit_path or 'an unknown unit'}",
            "as root, each run gets a transient scope in its tier's slice "
            "(tiered-<tier>.slice) with the tier's ceilings as unit properties",
        )
    ]
    found.append(_session(facts))
    found.append(_delegate(facts))
    return found


def _session(facts: Facts) -> Finding:
    systemd = facts.systemd
    session = systemd.session
    if session is None:
        return Finding(
            "systemd.session-scope",
            AREA,
            Severity.OK,
            "tiered-run is not in a login session's scope",
            "what you configured for its slice applies to it",
        )
    cpus = facts.cpus
    narrowed = set(cpus.allowed) != set(cpus.online)
    where = f"{systemd.user_slice}/{session}" if systemd.user_slice else session
    what = (
        f"processes started from here may use CPUs {format_cpus(cpus.allowed)} of online "
        f"{format_cpus(cpus.online)}, as the session scope allows"
        if narrowed
        else f"processes started from here may use every online CPU ({format_cpus(cpus.online)})"
    )
    systemd_backend = facts.backend("systemd")
    if facts.auto == "systemd":
        return Finding(
            "systemd.session-scope",
            AREA,
            Severity.NOTE,
            f"systemd-logind put tiered-run in the login session scope {where}",
            f"{what}; settings made for other slices do not reach them. The systemd backend "
            "takes each run out of the session into tiered-<tier>.slice, with its tier's CPUs",
        )
    reason = systemd_backend.reason if systemd_backend else "not probed"
    return Finding(
        "systemd.session-scope",
        AREA,
        Severity.WARNING,
        f"systemd-logind put tiered-run in the login session scope {where}",
        f"{what}; a slice you configured (AllowedCPUs=, MemoryMax=) does not reach them. "
        f"Runs are made below the session scope, since the systemd backend is not used "
        f"({reason})",
        "run tiered-run as root (sudo tiered-run ...): each run then lands in "
        "tiered-<tier>.slice with its tier's CPUs, whatever session it was started from",
    )


def _delegate(facts: Facts) -> Finding:
    systemd = facts.systemd
    if systemd.delegate is None:
        return Finding(
            "systemd.delegate",
            AREA,
            Severity.NOTE,
            f"transient scopes with Delegate=yes: {systemd.delegate_detail}",
            "the systemd backend needs them; without root tiered-run cannot ask for them",
            "as a user: systemd-run --user --scope -p Delegate=yes tiered-run ...",
        )
    if systemd.delegate:
        return Finding(
            "systemd.delegate",
            AREA,
            Severity.OK,
            "transient scopes with Delegate=yes work",
            "each run's scope is delegated: tiered-run makes the run's own leaf inside it",
        )
    return Finding(
        "systemd.delegate",
        AREA,
        Severity.PROBLEM,
        f"a transient scope with Delegate=yes could not be made: {systemd.delegate_detail}",
        "the systemd backend cannot start a run here; --backend auto picks it all the same "
        "where systemd is init and tiered-run is root",
        "check systemd's journal (journalctl -u 'tiered-run-*'), or run with "
        "--backend cgroup2 (or cgroup1 on a hybrid machine)",
    )
