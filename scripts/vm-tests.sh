#!/usr/bin/env bash
# The backend integration tests on machines unlike this one, in throwaway VMs with systemd as
# PID 1: once on a pure cgroup v2 hierarchy, once in hybrid mode (v1 controllers + systemd),
# the layout of Ubuntu 20.04. A VM that cannot start fails the stage; it never skips.
#   scripts/vm-tests.sh [v2|hybrid ...]      (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
modes=("$@"); [ ${#modes[@]} -gt 0 ] || modes=(v2 hybrid)
wheels=$repo/.vm-wheels
rm -rf "$wheels"
python3 -m pip wheel -q -w "$wheels" '.[test]'
# Only what this repository's tests exercise on the new kinds of machine: the backends,
# the systemd export (read back by that systemd's own systemd-analyze), doctor and init
# where each kind of machine must show findings of its own (their other tests read fakes,
# and cost minutes under software emulation for nothing new), and the CPU and I/O
# ceilings against that kernel's cpu and io controllers (about 15 s).
select='systemd or cgroup2 or cgroup1 or sigkill or exit_code_is_whether or works_as_written_after_init or a_run_reads or shares_kernel'
status=0
for mode in "${modes[@]}"; do
  case $mode in
    v2) append="systemd.unified_cgroup_hierarchy=1" ;;
    hybrid) append="systemd.unified_cgroup_hierarchy=0" ;;
    *) echo "vm-tests: unknown mode $mode (v2 or hybrid)" >&2; exit 2 ;;
  esac
  echo "=== VM stage: $mode ($append)"
  guest="set -e
python3 -m venv /tmp/venv
/tmp/venv/bin/pip install -q --no-index --find-links .vm-wheels 'tiered-run[test]'
echo \"cgroup mounts: \$(grep cgroup /proc/mounts | cut -d' ' -f2,3 | tr '\\n' ' ')\"
cd $repo && /tmp/venv/bin/python -m pytest -q -p no:cacheprovider -rs tests/test_run.py tests/test_systemd.py tests/test_cgroup2.py tests/test_subtree.py tests/test_ownership.py tests/test_watchdog.py tests/test_export.py tests/test_doctor.py tests/test_init.py tests/test_shares_kernel.py tests/test_news.py -k '$select'"
  if VM_APPEND="$append" VM_SHARE="$repo" VM_TIMEOUT="${VM_TIMEOUT:-1200}" scripts/vm-run run "$guest"; then
    echo "=== VM stage $mode: passed"
  else
    rc=$?
    echo "=== VM stage $mode: FAILED (exit $rc; 124 = VM timeout, 125 = VM did not start or report)" >&2
    status=1
  fi
done
rm -rf "$wheels"
exit $status
