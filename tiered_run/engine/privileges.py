"""Giving up privileges in the child, between fork and exec, for a root workload that
does not need them (`--no-new-privileges`, `--drop-caps`).

Why dropping capabilities is not enough on its own: a cgroup's control files belong to
root (uid 0, mode 0644), so a root workload may write its own `memory.limit_in_bytes`, or
its pid into a parent's `cgroup.procs`, by plain file permissions, with no capability at
all. What holds (measured on cgroup v1 and v2):

1. a mount namespace of its own in which every cgroup filesystem is remounted read-only:
   a write fails with EROFS, and undoing the remount needs CAP_SYS_ADMIN;
2. CAP_SYS_ADMIN and the other capabilities that could undo the limits leave the
   bounding set, so the workload does not get them back at exec;
3. a system call filter that refuses new user namespaces (and setns): in a user
   namespace of its own a process gets every capability back there, may mount a fresh
   cgroup filesystem, and, still uid 0 to the kernel, may write the limit through it.

Everything here runs in the forked child: raw system calls through ctypes, no locks, no
logging, nothing that could wait on a thread of the parent. The filter is assembled
once, at import, in the parent.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from tiered_run.model.spec import Privileges

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_mount = _libc.mount
_mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]

PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_SLAVE = 1, 32, 4096, 16384, 1 << 19
MS_NOSUID, MS_NODEV = 2, 4
_MOUNT_OPTION_FLAGS = {
    "nosuid": 2,
    "nodev": 4,
    "noexec": 8,
    "nosymfollow": 256,
    "noatime": 1024,
    "nodiratime": 2048,
    "relatime": 1 << 21,
    "strictatime": 1 << 24,
}

# Capabilities that leave the bounding set with --drop-caps, and why.
DROPPED_CAPS = {
    "CAP_SYS_ADMIN": 21,  # mount, remount, setns: undo the read-only cgroup filesystems
    "CAP_SYS_RESOURCE": 24,  # raise rlimits, lower its own oom_score_adj
    "CAP_SYS_NICE": 23,  # real-time scheduling that starves the host's CPUs
    "CAP_SYS_PTRACE": 19,  # reach into processes outside its mount namespace
    "CAP_SYS_MODULE": 16,  # kernel modules: anything at all
    "CAP_SYS_RAWIO": 17,  # raw memory and I/O ports: anything at all
    "CAP_SETFCAP": 31,  # map root into a user namespace
    "CAP_BPF": 39,  # kernel programs
}
_CAP_SYS_ADMIN, _CAP_SETPCAP = 21, 8

# -- the system call filter --------------------------------------------------------------
# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little endian).
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_LD_ABS, _JEQ, _JSET, _RET, _AND = 0x20, 0x15, 0x45, 0x06, 0x54
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_X32_BIT = 0x40000000

# (audit arch, clone, unshare, setns, clone3) per ABI; clone's and unshare's flags are
# their first argument on all of these.
_ABIS = {
    "x86_64": ((0xC000003E, 56, 272, 308, 435), (0x40000003, 120, 310, 346, 435)),
    "aarch64": ((0xC00000B7, 220, 97, 268, 435), (0x40000028, 120, 337, 375, 435)),
}


def _assemble(machine: str) -> bytes | None:
    """A classic BPF program: clone/unshare with CLONE_NEWUSER and setns fail with EPERM,
    clone3 (whose flags a filter cannot read) with ENOSYS, so that the C library falls
    back to clone; everything else is allowed."""
    abis = _ABIS.get(machine)
    if abis is None:
        return None
    code: list[tuple[int, int, object, object]] = []
    labels: dict[str, int] = {}

    def emit(op: int, k: int, jt: object = 0, jf: object = 0) -> None:
        code.append((op, k, jt, jf))

    native, compat = abis
    emit(_LD_ABS, _ARCH)
    emit(_JEQ, native[0], "native", 0)
    emit(_JEQ, compat[0], "compat", "allow")
    for name, (_, clone, unshare, setns, clone3) in (("native", native), ("compat", compat)):
        labels[name] = len(code)
        emit(_LD_ABS, _NR)
        if name == "native" and machine == "x86_64":
            emit(_AND, 0xFFFFFFFF & ~_X32_BIT)  # x32 calls: same numbers, one bit set
        emit(_JEQ, clone3, "enosys", 0)
        emit(_JEQ, setns, "eperm", 0)
        emit(_JEQ, clone, "flags", 0)
        emit(_JEQ, unshare, "flags", "allow")
    labels["flags"] = len(code)
    emit(_LD_ABS, _ARG0_LOW)
    emit(_JSET, CLONE_NEWUSER, "eperm", "allow")
    labels["enosys"] = len(code)
    emit(_RET, _ERRNO | errno.ENOSYS)
    labels["eperm"] = len(code)
    emit(_RET, _ERRNO | errno.EPERM)
    labels["allow"] = len(code)
    emit(_RET, _ALLOW)

    def offset(at: int, target: object) -> int:
        return target if isinstance(target, int) else labels[str(target)] - at - 1

    return b"".join(
        struct.pack("<HBBI", op, offset(i, jt), offset(i, jf), k)
        for i, (op, k, jt, jf) in enumerate(code)
    )


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_FILTER_BYTES = _assemble(os.uname().machine)
_FILTER_BUFFER = (
    ctypes.create_string_buffer(_FILTER_BYTES, len(_FILTER_BYTES)) if _FILTER_BYTES else None
)
_FILTER = (
    _SockFprog(len(_FILTER_BYTES) // 8, ctypes.addressof(_FILTER_BUFFER))
    if _FILTER_BYTES and _FILTER_BUFFER is not None
    else None
)


# -- in the parent ------------------------------------------------------------------------


def unsupported_reason(privileges: Privileges) -> str | None:
    """Why `privileges` cannot be applied here (checked before anything starts), or None."""
    if not privileges.drop_caps:
        return None
    if os.geteuid() != 0:
        return (
            "--drop-caps is for a workload that runs as root; tiered-run is not root, so the "
            "workload has no capabilities to drop: leave it out"
        )
    needed = 1 << _CAP_SYS_ADMIN | 1 << _CAP_SETPCAP
    effective = _effective_caps()
    if effective is not None and effective & needed != needed:
        return (
            "--drop-caps needs CAP_SYS_ADMIN and CAP_SETPCAP to make the cgroup filesystems "
            "read-only for the workload, and tiered-run lacks them here; leave it out"
        )
    if _FILTER is None:
        return f"--drop-caps has no system call filter for {os.uname().machine}; leave it out"
    if not _has_seccomp():
        return "--drop-caps needs a kernel with seccomp filters; leave it out"
    return None


def _effective_caps() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _has_seccomp() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return any(line.startswith("Seccomp:") for line in status)
    except OSError:
        return False


# -- in the child, between fork and exec --------------------------------------------------


def restrict(privileges: Privileges) -> None:
    """Apply `privileges` to the calling process; raises OSError when something fails."""
    if privileges.drop_caps:
        _read_only_cgroups()
        for cap in DROPPED_CAPS.values():
            if _prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0:
                continue  # a capability this kernel does not know
            _check(_prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "dropping a capability")
        if _FILTER is None:
            raise OSError(errno.ENOSYS, "no system call filter for this architecture")
        _check(
            _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(_FILTER), 0, 0),
            "installing the user namespace filter",
        )
    if privileges.no_new_privileges:
        _check(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")


def private_tmp() -> None:
    """A mount namespace of our own with fresh tmpfs on /tmp and /dev/shm: what the workload
    leaves there (shared memory is charged to the run as memory, and outlives a killed
    writer) goes away with the namespace, that is with the run's last process. Mounts
    become slaves first, so nothing done here reaches the host."""
    _check(_unshare(CLONE_NEWNS), "creating a mount namespace")
    _check(_mount(None, b"/", None, MS_REC | MS_SLAVE, None), "making mounts private")
    for point in (b"/tmp", b"/dev/shm"):
        _check(
            _mount(b"tmpfs", point, b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=1777"),
            f"mounting a private {point.decode()}",
        )


def _read_only_cgroups() -> None:
    """A mount namespace of our own, in which every cgroup filesystem is read-only.

    Mounts become slaves first: the host's later mounts still appear here, and nothing done
    here reaches the host. A bind remount keeps each mount's other flags (nosuid, ...).
    """
    _check(_unshare(CLONE_NEWNS), "creating a mount namespace")
    _check(_mount(None, b"/", None, MS_REC | MS_SLAVE, None), "making mounts private")
    for point, options in _cgroup_mounts():
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options.split(b","):
            flags |= _MOUNT_OPTION_FLAGS.get(option.decode("ascii", "replace"), 0)
        _check(_mount(None, point, None, flags, None), "remounting a cgroup filesystem")


def _cgroup_mounts() -> list[tuple[bytes, bytes]]:
    """(mount point, per-mount options) of every cgroup and cgroup2 mount we can see."""
    fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    mounts = []
    for line in b"".join(chunks).splitlines():
        fields = line.split(b" ")
        if b"-" not in fields:
            continue
        fstype = fields[fields.index(b"-") + 1]
        if fstype in (b"cgroup", b"cgroup2"):
            mounts.append((_unescape(fields[4]), fields[5]))
    return mounts


def _unescape(field: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash in a path as octal escapes."""
    for code in (b"\\040", b"\\011", b"\\012", b"\\134"):
        field = field.replace(code, bytes([int(code[1:], 8)]))
    return field


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
