"""Whose memory ceiling an OOM kill in a run's tree came from: the run's own, one inside it
(a nested run's), or one above it (an enclosing run's, a container's, the host's).

cgroup v1, measured on Linux 6.18 with a 200 MiB memcg around a 1 GiB one: an OOM at the
outer ceiling counts `oom_kill 1` in the victim's (inner) `memory.oom_control` and 0 in the
outer one, and raises only the outer `memory.failcnt` (138 here); with the ceilings swapped
the inner counts both. So `oom_kill` is not hierarchical and `failcnt` counts the hits of
that memcg's own limit: a run sums `oom_kill` over its subtree and gives each kill to the
nearest memcg on the victim's way up whose limit was hit. A nested run removes its memcg
within milliseconds of the kill, and its count with it, so the run also registers for the
memcg's OOM notifications (OomEvents): they fire when it or a memcg above it goes OOM (1
for the outer and 1 for the inner memcg in the case above, 0 for the outer when the inner
limit was hit) and stay counted after the victim's memcg is gone.

cgroup v2: `memory.events` counts up the tree (a descendant's `oom_kill` included),
`memory.events.local` does not, and the `oom` event is recorded at the memcg whose limit
was hit. The run's own ceiling was hit when its local `oom` rose; a ceiling inside it when
only the hierarchical `oom` did; otherwise the kill came from above.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tiered_run.backends.cgroupfs import CgroupDir
from tiered_run.host.heldfiles import parse_keyed
from tiered_run.model.usage import Ceiling, OomSite

Key = tuple[str, ...]  # a memcg's path below the run's directory; () is the run's own


@dataclass(frozen=True)
class OomTally:
    own: int = 0
    nested: int = 0
    enclosing: int = 0


def tally_v1(nodes: dict[Key, tuple[int, int]], run_hit: bool) -> OomTally:
    """`nodes`: (oom_kill, failcnt) of every memcg of the run; `run_hit`: the run's own
    ceiling was hit (its failcnt rose, or that of a cgroup that is part of the run)."""
    own = nested = enclosing = 0
    for key, (kills, _) in nodes.items():
        if not kills:
            continue
        if any(nodes.get(key[:depth], (0, 0))[1] > 0 for depth in range(len(key), 0, -1)):
            nested += kills
        elif run_hit:
            own += kills
        else:
            enclosing += kills
    return OomTally(own, nested, enclosing)


def with_events(tally: OomTally, events: int, run_hit: bool) -> OomTally:
    """OOMs at the run's own ceiling (notified, and its limit was hit) whose victims the walk
    no longer sees: they were in a nested memcg that has been removed since."""
    seen = tally.own + tally.enclosing
    if run_hit and events > seen:
        return OomTally(tally.own + events - seen, tally.nested, tally.enclosing)
    return tally


class OomEvents:
    """cgroup v1 OOM notifications of one memcg, counted by an eventfd registered through
    `cgroup.event_control` on `memory.oom_control`. Linux 6.18 warns once that this
    interface is deprecated; where it is gone, the count stays 0 and only the walk counts."""

    def __init__(self, group: CgroupDir) -> None:
        self._count = 0
        self._fds: list[int] = []
        try:
            event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._fds.append(event)
            control = os.open(group.path / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            self._fds.append(control)
            with open(group.path / "cgroup.event_control", "w") as handle:
                handle.write(f"{event} {control}")
        except OSError:
            self.close()

    def count(self) -> int:
        if self._fds:
            try:
                self._count += os.eventfd_read(self._fds[0])
            except BlockingIOError:
                pass
        return self._count

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def tally_v2(events: dict[str, int], local: dict[str, int], run_hit: bool) -> OomTally:
    """`events` and `local`: the run's memory.events and memory.events.local."""
    kills = events.get("oom_kill", 0)
    if not kills:
        return OomTally()
    if run_hit:
        return OomTally(own=kills)
    in_run = local.get("oom_kill", 0)  # victims in the run's own memcg: never a nested OOM
    if events.get("oom", 0) > local.get("oom", 0):
        return OomTally(nested=kills - in_run, enclosing=in_run)
    return OomTally(enclosing=kills)


def v1_nodes(run: CgroupDir, own: tuple[int, int]) -> dict[Key, tuple[int, int]]:
    """(oom_kill, failcnt) of the run's memcg (`own`, read from held files) and of every
    memcg below it, read now."""
    nodes: dict[Key, tuple[int, int]] = {(): own}
    stack: list[tuple[Key, CgroupDir]] = [((), run)]
    while stack:
        key, group = stack.pop()
        try:
            children = group.children()
        except OSError:
            continue
        for child in children:
            child_key = (*key, child.path.name)
            try:
                kills = parse_keyed(child.read("memory.oom_control")).get("oom_kill", 0)
                failcnt = int(child.read("memory.failcnt"))
            except (OSError, ValueError):
                continue  # removed meanwhile
            nodes[child_key] = (kills, failcnt)
            stack.append((child_key, child))
    return nodes


@dataclass
class Ancestors:
    """The memcgs above a run, with the counter that rises when their own limit is hit
    (v1 memory.failcnt, v2 memory.events.local `oom`), read when the run was created so that
    a rise can be told from history. The nearest `owned` of them are part of the run (the
    systemd scope around its leaf): a hit there is the run's own ceiling."""

    counter: Callable[[CgroupDir], int | None]
    limit: Callable[[CgroupDir], int | None]
    owned: int = 0
    groups: list[CgroupDir] = field(default_factory=list)
    baseline: list[int | None] = field(default_factory=list)

    def record(self, parent: Path) -> None:
        self.groups, self.baseline = [], []
        path = parent
        while path != path.parent:
            group = CgroupDir(path)
            value = self.counter(group)
            if value is None:
                break
            self.groups.append(group)
            self.baseline.append(value)
            path = path.parent

    def _hits(self) -> list[int]:
        hits = []
        for index, (group, before) in enumerate(zip(self.groups, self.baseline, strict=True)):
            now = self.counter(group)
            if now is not None and before is not None and now > before:
                hits.append(index)
        return hits

    def owned_hit(self) -> bool:
        return any(index < self.owned for index in self._hits())

    def enclosing(self) -> Ceiling | None:
        """The nearest ceiling above the run that was hit since it started; None if none was
        (the host ran out of memory, or the ceiling is out of sight)."""
        for index in self._hits():
            if index >= self.owned:
                group = self.groups[index]
                return Ceiling(str(group.path), self.limit(group))
        return None


@dataclass(frozen=True)
class OomReading:
    """The OOM fields of a Usage sample."""

    kills: int = 0
    site: OomSite = OomSite.OWN
    ceiling: Ceiling | None = None


def reading(tally: OomTally, ancestors: Ancestors) -> OomReading:
    """What the run answers for: kills at a nested ceiling are the nested run's outcome."""
    if tally.own:
        return OomReading(tally.own + tally.enclosing)
    if tally.enclosing:
        return OomReading(tally.enclosing, OomSite.ENCLOSING, ancestors.enclosing())
    return OomReading()


def _read_int(group: CgroupDir, name: str) -> int | None:
    try:
        return int(group.read(name))
    except (OSError, ValueError):
        return None


def v1_failcnt(group: CgroupDir) -> int | None:
    return _read_int(group, "memory.failcnt")


def v1_limit(group: CgroupDir) -> int | None:
    value = _read_int(group, "memory.limit_in_bytes")
    return None if value is None or value >= 1 << 62 else value  # "unlimited" is ~2^63


def v2_oom_events(group: CgroupDir) -> int | None:
    try:
        return parse_keyed(group.read("memory.events.local")).get("oom", 0)
    except OSError:
        return None


def v2_limit(group: CgroupDir) -> int | None:
    return _read_int(group, "memory.max")  # "max" reads as None
