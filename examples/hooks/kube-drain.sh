#!/bin/sh
# kube-drain.sh — hook: drain this Kubernetes node before the reboot, uncordon it after.
#
#   kube-drain.sh drain      as hooks.pre_reboot: cordon + evict the pods
#                            (kubectl drain --ignore-daemonsets --delete-emptydir-data --timeout)
#   kube-drain.sh uncordon   as hooks.post_reboot: make the node schedulable again
#
# A node that was already cordoned before the drain (by an operator, for other work) stays
# cordoned after the reboot: the drain marks it with the annotation
# clusterrebootd.io/cordoned-before-drain=true and the uncordon step only removes that mark.
# If the drain fails (timeout, a pod that cannot be evicted), the node is uncordoned again
# (unless it was cordoned before, or KUBE_UNCORDON_ON_FAILURE=false) and the script exits 1:
# clusterrebootd then aborts the reboot and gives the slot back.
#
# Requires: kubectl with credentials allowed to cordon, drain (evict pods) and annotate nodes
# (KUBECONFIG); POSIX sh.
#
# Environment:
#   RC_NODE_NAME              set by clusterrebootd: the node name (its node_name)
#   KUBE_NODE_NAME            the Kubernetes node name when it differs from node_name
#   KUBE_DRAIN_TIMEOUT        kubectl drain --timeout (default 45s: below the default
#                             hooks.timeout_sec of 60, after which the daemon kills the hook;
#                             raise both together, e.g. 600s with hooks.timeout_sec: 660)
#   KUBE_DRAIN_EXTRA_ARGS     more drain flags, split on spaces (e.g. "--force --grace-period=60")
#   KUBE_UNCORDON_ON_FAILURE  true (default) / false: uncordon when the drain failed
#   KUBE_UNCORDON_ATTEMPTS    uncordon: tries per kubectl call (default 8), KUBE_RETRY_INTERVAL
#                             seconds apart (default 5): right after the boot the API server may
#                             not answer yet (on a control-plane node it is starting itself);
#                             keep attempts x interval below hooks.timeout_sec
#   KUBECTL                   the kubectl binary (default: kubectl from PATH)
#   KUBECONFIG                read by kubectl
#
# Exit codes (clusterrebootd: a non-zero pre-reboot hook aborts the reboot; a failing
# post-reboot hook is reported and the post-reboot health check runs anyway):
#   0  drained / uncordoned
#   1  kubectl failed (its output is printed)
#   2  usage: no node name, unknown mode, kubectl missing
set -eu

mode=${1:-}
node=${KUBE_NODE_NAME:-${RC_NODE_NAME:-}}
kubectl=${KUBECTL:-kubectl}
timeout=${KUBE_DRAIN_TIMEOUT:-45s}
uncordon_on_failure=${KUBE_UNCORDON_ON_FAILURE:-true}
attempts=${KUBE_UNCORDON_ATTEMPTS:-8}
interval=${KUBE_RETRY_INTERVAL:-5}
mark=clusterrebootd.io/cordoned-before-drain

case $mode in
  drain | uncordon) ;;
  *) echo "usage: kube-drain.sh drain|uncordon (got '${mode}')"; exit 2 ;;
esac
if [ -z "$node" ]; then
  echo "kube-drain: no node name (RC_NODE_NAME and KUBE_NODE_NAME are empty)"
  exit 2
fi
if ! command -v "$kubectl" >/dev/null 2>&1; then
  echo "kube-drain: $kubectl not found"
  exit 2
fi

# Runs "$@" up to $attempts times, $interval seconds apart.
retry() {
  n=1
  until "$@"; do
    if [ "$n" -ge "$attempts" ]; then
      echo "kube-drain: gave up after $n attempts: $*" >&2
      return 1
    fi
    n=$((n + 1))
    sleep "$interval"
  done
}

if [ "$mode" = uncordon ]; then
  was=$(retry "$kubectl" get node "$node" -o "jsonpath={.metadata.annotations.clusterrebootd\\.io/cordoned-before-drain}")
  if [ "$was" = true ]; then
    retry "$kubectl" annotate node "$node" "$mark-"
    echo "kube-drain: $node was cordoned before the drain: left cordoned"
    exit 0
  fi
  retry "$kubectl" uncordon "$node"
  echo "kube-drain: $node uncordoned"
  exit 0
fi

before=$("$kubectl" get node "$node" -o 'jsonpath={.spec.unschedulable}')
if [ "$before" = true ]; then
  "$kubectl" annotate --overwrite node "$node" "$mark=true"
fi
# shellcheck disable=SC2086 # KUBE_DRAIN_EXTRA_ARGS is a list of flags, split on purpose
if "$kubectl" drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout="$timeout" ${KUBE_DRAIN_EXTRA_ARGS:-}; then
  echo "kube-drain: $node drained"
  exit 0
fi
echo "kube-drain: draining $node failed (timeout $timeout); the reboot is aborted"
if [ "$before" != true ] && [ "$uncordon_on_failure" = true ]; then
  "$kubectl" uncordon "$node" || echo "kube-drain: uncordon $node failed too"
fi
exit 1
