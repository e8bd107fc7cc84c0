"""Every exit code tiered-run gives, decided here and nowhere else (README: Exit codes).

The workload's own code where it ended by itself; the 12x codes of `timeout` and its
kin for what tiered-run did (124 timeout, 125 tiered-run's own refusal or failure,
126/127 a command that cannot start); 12x below 124 for tiered-run's own ceilings; and
128 + N for a signal, as a shell reports it.
"""

from __future__ import annotations

from tiered_run.model.report import Outcome

EXIT_EXPECTATION = 119  # ladder: a step exited 0 where its `expect` asked for a breach
EXIT_UNHEALTHY = 120  # ladder: the host did not settle before a step
EXIT_LOAD = 121
EXIT_MEMORY = 122
EXIT_TASKS = 123
EXIT_TIMEOUT = 124
EXIT_TOOL = 125  # tiered-run refused its input, or itself failed
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

_BREACH_EXIT = {
    Outcome.TIMEOUT: EXIT_TIMEOUT,
    Outcome.MEMORY: EXIT_MEMORY,
    Outcome.TASKS: EXIT_TASKS,
    Outcome.LOAD: EXIT_LOAD,
}


def signal_exit(signum: int) -> int:
    """128 + N: how a shell reports death by signal N, and how tiered-run reports one it got."""
    return 128 + signum


def exit_code_for(outcome: Outcome, returncode: int | None, signum: int | None) -> int:
    """The exit code CI branches on: the workload's own where it ended by itself.

    `signum` is the signal that ended the workload (SIGNAL) or the one tiered-run got
    (INTERRUPTED); an ERROR comes with its code from where it happened (126, 127, 125)."""
    if outcome in _BREACH_EXIT:
        return _BREACH_EXIT[outcome]
    if outcome is Outcome.EXITED and returncode is not None:
        return returncode
    if outcome in (Outcome.SIGNAL, Outcome.INTERRUPTED) and signum:
        return signal_exit(signum)
    return EXIT_TOOL
