#!/bin/sh
# Reference health script: this node may be rebooted only while systemd reports the system as
# "running" (no failed units) — a starting point; a real cluster checks its own quorum
# (etcd member health, Ceph HEALTH_OK, kubectl drain readiness, ...). Exit 0 = may reboot.
# RC_PHASE tells when it runs: pre-lock, post-lock, heartbeat, post-reboot (docs/GO-COMPAT.md §6).
state=$(systemctl is-system-running 2>/dev/null)
case "$state" in
  running) exit 0 ;;
  *) echo "system state is ${state:-unknown}"; exit 1 ;;
esac
