#!/bin/sh
# etcd-quorum.sh — health check: may this node go down without breaking etcd's quorum?
#
# For nodes that run an etcd member (a Kubernetes control plane, the etcd cluster itself, or the
# etcd clusterrebootd coordinates through). It asks the cluster for its voting members
# (`etcdctl member list`) and checks every member's health (`etcdctl endpoint health --cluster`).
# It passes only if the members still healthy after this node goes down are a quorum
# (more than half of the voting members). With 3 members that means: all 3 healthy now.
#
# Requires: etcdctl (etcd v3 API; Debian package etcd-client), POSIX sh, awk.
#
# Environment (all optional):
#   RC_ETCD_ENDPOINTS            set by clusterrebootd: etcd_endpoints, comma-separated
#   ETCD_QUORUM_ENDPOINTS        check this etcd instead (comma-separated URLs), e.g. the
#                                Kubernetes etcd when clusterrebootd uses another one
#   ETCD_QUORUM_THIS_NODE_IS_MEMBER  true (default): this node hosts one of the members, so one
#                                healthy member fewer must still be a quorum; false: this node
#                                is no member, the healthy members now must be a quorum
#   ETCD_QUORUM_DIAL_TIMEOUT     etcdctl --dial-timeout (default 2s)
#   ETCD_QUORUM_COMMAND_TIMEOUT  etcdctl --command-timeout (default 5s)
#   ETCDCTL                      the etcdctl binary (default: etcdctl from PATH)
#   ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER
#                                read by etcdctl itself: TLS files and user:password. The
#                                daemon does not pass its etcd_tls/etcd_auth to scripts; set
#                                these in a wrapper or a systemd drop-in (Environment=).
#
# Exit codes (clusterrebootd: 0 = may reboot, anything else blocks; the first line of output
# is what `status --explain` shows):
#   0  enough members stay healthy
#   1  not enough: rebooting now would lose (or has lost) the quorum
#   2  cannot check: no endpoints, etcdctl missing, member list unreadable
set -eu

endpoints=${ETCD_QUORUM_ENDPOINTS:-${RC_ETCD_ENDPOINTS:-}}
etcdctl=${ETCDCTL:-etcdctl}
is_member=${ETCD_QUORUM_THIS_NODE_IS_MEMBER:-true}
dial=${ETCD_QUORUM_DIAL_TIMEOUT:-2s}
cmd_timeout=${ETCD_QUORUM_COMMAND_TIMEOUT:-5s}

if [ -z "$endpoints" ]; then
  echo "etcd-quorum: no etcd endpoints (RC_ETCD_ENDPOINTS is empty: lock_backend local? set ETCD_QUORUM_ENDPOINTS)"
  exit 2
fi
if ! command -v "$etcdctl" >/dev/null 2>&1; then
  echo "etcd-quorum: $etcdctl not found (Debian: apt install etcd-client)"
  exit 2
fi
case $is_member in
  true | false) ;;
  *) echo "etcd-quorum: ETCD_QUORUM_THIS_NODE_IS_MEMBER must be true or false, got '$is_member'"; exit 2 ;;
esac

# Our flags win; an ETCDCTL_* variable for the same flag would make etcdctl refuse.
unset ETCDCTL_ENDPOINTS ETCDCTL_DIAL_TIMEOUT ETCDCTL_COMMAND_TIMEOUT
export ETCDCTL_API=3

ctl() {
  "$etcdctl" --endpoints="$endpoints" --dial-timeout="$dial" --command-timeout="$cmd_timeout" "$@"
}

# "id, status, name, peer URLs, client URLs, is learner" — learners do not vote.
if ! members=$(ctl member list 2>&1); then
  echo "etcd-quorum: cannot list the members at $endpoints: $(echo "$members" | tail -n 1)"
  exit 2
fi
voting=$(echo "$members" | awk -F', ' 'NF >= 5 && $NF != "true" { n++ } END { print n + 0 }')
if [ "$voting" -eq 0 ]; then
  echo "etcd-quorum: no voting members in the member list of $endpoints"
  exit 2
fi

# One line per member with a client URL: "<url> is healthy: ..." or "<url> is unhealthy: ...".
# The exit code is 1 as soon as one member is unhealthy; the count below decides.
health=$(ctl endpoint health --cluster 2>&1) || true
healthy=$(echo "$health" | grep -c ' is healthy:' || true)
quorum=$((voting / 2 + 1))
left=$healthy
if [ "$is_member" = true ] && [ "$left" -gt 0 ]; then
  left=$((left - 1))
fi

if [ "$left" -ge "$quorum" ]; then
  echo "etcd-quorum: $healthy of $voting members healthy; $left stay up during the reboot, quorum is $quorum"
  exit 0
fi
if [ "$healthy" -lt "$quorum" ]; then
  echo "etcd-quorum: quorum lost: $healthy of $voting members healthy, quorum is $quorum"
else
  echo "etcd-quorum: rebooting would break the quorum: $healthy of $voting members healthy, $left would stay up, quorum is $quorum"
fi
echo "$health" | grep -v ' is healthy:' | head -n 5 || true
exit 1
