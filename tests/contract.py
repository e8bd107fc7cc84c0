"""The published JSON: every key of the run, ladder and calibration reports, at every
level. CI jobs read these; a key that changes is a new schema_version, not a refactor."""

from __future__ import annotations

RUN_JSON_KEYS = {
    "schema_version",
    "run_id",
    "command",
    "tier",
    "backend",
    "backend_reason",
    "outcome",
    "exit_code",
    "returncode",
    "signal",
    "signal_name",
    "message",
    "started_at",
    "ended_at",
    "hostname",
    "tiered_run_version",
    "peak_memory_method",
    "peak_memory_unreclaimable_bytes",
    "memory_split",
    "io",
    "io_source",
    "cpu_throttled_s",
    "pressure_stall",
    "wall_s",
    "cpu_s",
    "peak_memory_bytes",
    "peak_memory_source",
    "peak_tasks",
    "cpus",
    "cpus_seen",
    "leftover_killed",
    "limits",
    "enforced_by_kernel",
    "not_enforced",
    "memory_high_exceeded",
    "host",
    "log",
    "warnings",
    "events",
    "timeline",
    "before_kill",
}
BEFORE_KILL_JSON_KEYS = {
    "command",
    "returncode",
    "duration_s",
    "output",
    "truncated",
    "timed_out",
    "error",
}
LIMITS_JSON_KEYS = {
    "cpus",
    "timeout_s",
    "kill_after_s",
    "stop_signal",
    "memory_bytes",
    "memory_high_bytes",
    "tasks_max",
    "load_max",
    "pressure_max_pct",
    "on_load",
    "nice",
    "cpu_weight",
    "cpu_quota_pct",
    "io_weight",
    "io_read_max_bytes_per_s",
    "io_write_max_bytes_per_s",
    "io_read_iops_max",
    "io_write_iops_max",
    "io_device",
    "memory_low_bytes",
}
HOST_JSON_KEYS = {
    "load1_start",
    "load1_peak",
    "load1_end",
    "pressure_peak_pct",
    "memory_available_min_bytes",
    "protected_cpus",
    "protected_cpu_busy_peak_pct",
}
MEMORY_SPLIT_JSON_KEYS = {"anon_bytes", "file_bytes", "shmem_bytes", "kernel_bytes"}
EVENT_JSON_KEYS = {"t", "kind", "message"}
TIMELINE_JSON_KEYS = {
    "t",
    "memory_bytes",
    "tasks",
    "cpu_s",
    "load1",
    "pressure_pct",
    "io_read_bps",
    "io_write_bps",
}
IO_JSON_KEYS = {"read_bytes", "write_bytes", "read_ops", "write_ops"}
PRESSURE_STALL_JSON_KEYS = {"cpu_s", "memory_s", "io_s"}

LADDER_JSON_KEYS = {
    "schema_version",
    "kind",
    "name",
    "source",
    "outcome",
    "exit_code",
    "message",
    "wall_s",
    "steps",
}
STEP_JSON_KEYS = {
    "index",
    "name",
    "command",
    "expect",
    "status",
    "reason",
    "settle",
    "host_before",
    "host_after",
    "report",
}
SETTLE_JSON_KEYS = {"settled", "waited_s", "samples", "missed"}
MISS_JSON_KEYS = {"key", "value", "limit", "resource", "message"}
HOST_SAMPLE_JSON_KEYS = {"load1", "memory_available_bytes", "pressure_pct", "pressure_max_pct"}

CALIBRATION_JSON_KEYS = {
    "schema_version",
    "kind",
    "command",
    "tier",
    "outcome",
    "exit_code",
    "message",
    "attempts",
    "recommendation",
}
ATTEMPT_JSON_KEYS = {
    "index",
    "memory_bytes",
    "timeout_s",
    "outcome",
    "exit_code",
    "wall_s",
    "peak_memory_bytes",
    "report",
}
RECOMMENDATION_JSON_KEYS = {
    "memory",
    "memory_high",
    "timeout",
    "peak_memory_bytes",
    "peak_memory_unreclaimable_bytes",
    "wall_s",
    "headroom",
    "toml",
}

DOCTOR_JSON_KEYS = {"schema_version", "kind", "exit_code", "machine", "tier", "findings"}
DOCTOR_MACHINE_JSON_KEYS = {
    "kernel",
    "cgroup_mode",
    "pid1",
    "systemd_version",
    "session_scope",
    "root",
    "backend",
    "backend_reason",
    "guards",
    "cpus_online",
    "cpus_allowed",
    "cpus_isolated",
    "memory_total_bytes",
    "swap_total_bytes",
    "config",
}
DOCTOR_GUARDS_JSON_KEYS = {
    "cpus",
    "memory",
    "memory_high",
    "tasks_max",
    "cpu_weight",
    "cpu_quota",
    "io_weight",
    "io_read_max",
    "io_write_max",
    "io_read_iops_max",
    "io_write_iops_max",
    "memory_low",
}
DOCTOR_TIER_JSON_KEYS = {
    "name",
    "source",
    "default",
    "cpus",
    "guarded",
    "ceilings",
    "blockers",
    "notes",
}
DOCTOR_CEILING_JSON_KEYS = {"name", "key", "value", "shown", "guard", "how", "trouble", "guarded"}
FINDING_JSON_KEYS = {"id", "area", "severity", "summary", "consequence", "remedy"}
