#!/bin/sh
# peers-healthy.sh — health check: no other node of the fleet is unhealthy or silent.
#
# Reads the fleet from etcd with `clusterrebootd cluster status --json` (schema_version 1,
# docs/OPERATIONS.md "The fleet view") and blocks the reboot while another node (not this one,
# not in PEERS_IGNORE):
#   - last reported unhealthy (its `cluster_health` record: healthy = false), or
#   - has a stale health record (no report for health_stale_after_sec: its daemon or the whole
#     machine may be down; the daemon itself counts such a node only in cluster_policies), or
#   - has a fleet record that cannot be read (record_error).
# A node that holds a reboot slot is still counted by its health record: the daemon treats it as
# planned downtime and queues behind it anyway.
#
# Runs only in the phases in PEERS_CHECK_PHASES (default "pre-lock post-lock"). In the other
# phases (heartbeat, post-reboot) it exits 0 at once: those runs report THIS node's health to
# its peers, and reporting "unhealthy because a peer is" would make the peers block each other.
#
# Requires: python3 (standard library), POSIX sh, the clusterrebootd binary, lock_backend: etcd.
#
# Environment:
#   RC_NODE_NAME            set by clusterrebootd: this node (never counted)
#   RC_PHASE                set by clusterrebootd: pre-lock, post-lock, heartbeat, post-reboot, monitor
#                           (unset when run by hand: checked)
#   PEERS_IGNORE            space- or comma-separated node names never counted (default none)
#   PEERS_STALE_OK          true: do not count stale health records (default false)
#   PEERS_CHECK_PHASES      space-separated phases that check (default "pre-lock post-lock")
#   CLUSTERREBOOTD          the binary (default: clusterrebootd from PATH)
#   CLUSTERREBOOTD_CONFIG   its configuration (default /etc/clusterrebootd/config.yaml)
#
# Exit codes (clusterrebootd: 0 = may reboot, anything else blocks; the first line of output
# is what `status --explain` shows):
#   0  every other node is healthy (or this phase is not checked)
#   1  another node is unhealthy, stale or unreadable (listed)
#   2  cannot check: `cluster status --json` failed (etcd down, local backend) or its answer
#      is not schema_version 1
set -eu

phases=${PEERS_CHECK_PHASES:-pre-lock post-lock}
phase=${RC_PHASE:-}
if [ -n "$phase" ]; then
  case " $phases " in
    *" $phase "*) ;;
    *) echo "peers-healthy: not checked in phase $phase (checked in: $phases)"; exit 0 ;;
  esac
fi
bin=${CLUSTERREBOOTD:-clusterrebootd}
config=${CLUSTERREBOOTD_CONFIG:-/etc/clusterrebootd/config.yaml}
if ! command -v python3 >/dev/null 2>&1; then
  echo "peers-healthy: python3 not found"
  exit 2
fi
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
if ! fleet=$("$bin" cluster status --json --config "$config" 2>"$errors"); then
  echo "peers-healthy: \`$bin cluster status --json\` failed: $(head -n 1 "$errors")"
  exit 2
fi
export PEERS_IGNORE="${PEERS_IGNORE:-}" PEERS_STALE_OK="${PEERS_STALE_OK:-false}"
export PEERS_SELF="${RC_NODE_NAME:-}"
printf '%s' "$fleet" | python3 -I -c '
import json, os, sys
try:
    v = json.load(sys.stdin)
except ValueError as e:
    print("peers-healthy: cluster status --json is not JSON: %s" % e)
    sys.exit(2)
if not isinstance(v, dict) or v.get("schema_version") != 1:
    print("peers-healthy: cluster status --json has schema_version %r, this script reads 1" % (v.get("schema_version") if isinstance(v, dict) else None))
    sys.exit(2)
skip = set(os.environ["PEERS_IGNORE"].replace(",", " ").split())
me = os.environ["PEERS_SELF"]
if me:
    skip.add(me)
bad = []
for n in v.get("nodes") or []:
    name = n.get("node", "?")
    if name in skip:
        continue
    if n.get("healthy") is False:
        why = [u for u in v.get("unhealthy") or [] if u.split(" (")[0] == name]
        bad.append(why[0] if why else name + " (unhealthy)")
    elif n.get("record_error"):
        bad.append("%s (unreadable record: %s)" % (name, n["record_error"]))
if os.environ["PEERS_STALE_OK"] != "true":
    for s in v.get("stale") or []:
        if s.split(" (")[0] not in skip:
            bad.append(s.replace(" (last report", " (stale: last report", 1))
if bad:
    print("peers-healthy: %d other node(s) not healthy: %s" % (len(bad), "; ".join(bad[:10])))
    sys.exit(1)
print("peers-healthy: %d other node(s), all healthy" % len([n for n in v.get("nodes") or [] if n.get("node") not in skip]))
'
