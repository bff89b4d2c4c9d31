#!/bin/sh
# system-running.sh — health check: this node may be rebooted only while systemd reports the
# system as "running" (no failed units). A starting point; a real cluster also checks its own
# quorum (etcd-quorum.sh, Ceph HEALTH_OK, ...) and its peers (peers-healthy.sh).
#
# Requires: systemd (systemctl), POSIX sh.
#
# Environment:
#   RC_PHASE  set by clusterrebootd: pre-lock, post-lock, heartbeat, post-reboot (checked in all)
#
# Exit codes (clusterrebootd: 0 = may reboot, anything else blocks):
#   0  the system is running
#   1  it is not (degraded, starting, stopping, ...): the state is printed
set -eu

state=$(systemctl is-system-running 2>/dev/null) || true
case "$state" in
  running) exit 0 ;;
  *) echo "system state is ${state:-unknown}"; exit 1 ;;
esac
