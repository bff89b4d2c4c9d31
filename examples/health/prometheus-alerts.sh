#!/bin/sh
# prometheus-alerts.sh — health check: no Prometheus alert is firing (kured's alert check).
#
# Asks the Prometheus HTTP API for the active alerts (GET <PROMETHEUS_URL>/api/v1/alerts) and
# blocks the reboot while one of them counts. An alert counts when its state is in
# PROMETHEUS_ALERT_STATES, its alertname matches PROMETHEUS_ALERT_ONLY, does not match
# PROMETHEUS_ALERT_IGNORE, and every label filter in PROMETHEUS_ALERT_LABELS matches.
# Regular expressions are Python `re` and match anywhere in the value (like kured's Go regexp):
# anchor them with ^…$ for an exact name.
#
# Requires: python3 (standard library only: HTTP, JSON and regexes), POSIX sh.
#
# Environment:
#   PROMETHEUS_URL            required, e.g. http://prometheus.monitoring:9090 (an Alertmanager
#                             URL does not work: this is Prometheus' /api/v1/alerts)
#   PROMETHEUS_ALERT_IGNORE   alertnames that never block (default ^(Watchdog|InfoInhibitor)$:
#                             kube-prometheus' always-firing alerts); empty = ignore none.
#                             Also ignore alerts a pending reboot itself raises, or nothing reboots.
#   PROMETHEUS_ALERT_ONLY     only alertnames matching this block (default: every alert)
#   PROMETHEUS_ALERT_LABELS   space-separated label=regex filters an alert must all match to
#                             block, e.g. "severity=critical|warning cluster=^prod$" (default none)
#   PROMETHEUS_ALERT_STATES   space-separated states that block (default "firing"; add pending
#                             to also wait for alerts about to fire, as kured does by default)
#   PROMETHEUS_BEARER_TOKEN_FILE  file whose first line is sent as "Authorization: Bearer …"
#   PROMETHEUS_TIMEOUT        seconds for the request (default 10)
#
# Exit codes (clusterrebootd: 0 = may reboot, anything else blocks; the first line of output
# is what `status --explain` shows):
#   0  no alert counts
#   1  at least one alert counts (listed, at most 10)
#   2  cannot check: PROMETHEUS_URL unset, Prometheus unreachable or its answer unreadable, a
#      bad regex (fails closed: no reboot without an answer)
set -eu

if [ -z "${PROMETHEUS_URL:-}" ]; then
  echo "prometheus-alerts: set PROMETHEUS_URL (e.g. http://prometheus:9090)"
  exit 2
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "prometheus-alerts: python3 not found"
  exit 2
fi
export PROMETHEUS_URL
export PROMETHEUS_ALERT_IGNORE="${PROMETHEUS_ALERT_IGNORE-^(Watchdog|InfoInhibitor)$}"
export PROMETHEUS_ALERT_ONLY="${PROMETHEUS_ALERT_ONLY:-}"
export PROMETHEUS_ALERT_LABELS="${PROMETHEUS_ALERT_LABELS:-}"
export PROMETHEUS_ALERT_STATES="${PROMETHEUS_ALERT_STATES:-firing}"
export PROMETHEUS_BEARER_TOKEN_FILE="${PROMETHEUS_BEARER_TOKEN_FILE:-}"
export PROMETHEUS_TIMEOUT="${PROMETHEUS_TIMEOUT:-10}"

exec python3 -I - <<'PY'
import json, os, re, sys, urllib.request

def fail(msg):
    print("prometheus-alerts: " + msg)
    sys.exit(2)

env = os.environ
url = env["PROMETHEUS_URL"].rstrip("/") + "/api/v1/alerts"
try:
    ignore = re.compile(env["PROMETHEUS_ALERT_IGNORE"]) if env["PROMETHEUS_ALERT_IGNORE"] else None
    only = re.compile(env["PROMETHEUS_ALERT_ONLY"]) if env["PROMETHEUS_ALERT_ONLY"] else None
    labels = []
    for item in env["PROMETHEUS_ALERT_LABELS"].split():
        name, sep, rx = item.partition("=")
        if not sep or not name:
            fail("PROMETHEUS_ALERT_LABELS: expected label=regex, got %r" % item)
        labels.append((name, re.compile(rx)))
except re.error as e:
    fail("bad regular expression: %s" % e)
states = set(env["PROMETHEUS_ALERT_STATES"].split())
try:
    timeout = float(env["PROMETHEUS_TIMEOUT"])
except ValueError:
    fail("PROMETHEUS_TIMEOUT must be a number of seconds")

req = urllib.request.Request(url, headers={"Accept": "application/json"})
if env["PROMETHEUS_BEARER_TOKEN_FILE"]:
    try:
        with open(env["PROMETHEUS_BEARER_TOKEN_FILE"]) as f:
            token = f.readline().strip()
    except OSError as e:
        fail("cannot read PROMETHEUS_BEARER_TOKEN_FILE: %s" % e)
    req.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = json.load(r)
except Exception as e:  # unreachable, HTTP error, not JSON: no answer = no reboot
    fail("cannot read %s: %s" % (url, e))
if not isinstance(body, dict) or body.get("status") != "success":
    fail("%s did not answer success: %.200s" % (url, json.dumps(body)))
alerts = (body.get("data") or {}).get("alerts")
if not isinstance(alerts, list):
    fail("%s: no data.alerts list in the answer" % url)

def counts(a):
    if not isinstance(a, dict) or a.get("state") not in states:
        return False
    lab = a.get("labels") or {}
    name = str(lab.get("alertname", ""))
    if ignore and ignore.search(name):
        return False
    if only and not only.search(name):
        return False
    return all(rx.search(str(lab.get(n, ""))) for n, rx in labels)

def show(a):
    lab = dict(a.get("labels") or {})
    name = lab.pop("alertname", "?")
    inner = ",".join('%s="%s"' % (k, lab[k]) for k in sorted(lab))
    return "%s{%s} %s" % (name, inner, a.get("state"))

blocking = [a for a in alerts if counts(a)]
if not blocking:
    print("prometheus-alerts: no blocking alert (%d active, none counts)" % len(alerts))
    sys.exit(0)
names = sorted({str((a.get("labels") or {}).get("alertname", "?")) for a in blocking})
print("prometheus-alerts: %d alert(s) %s: %s" % (len(blocking), "/".join(sorted(states)), ", ".join(names)))
for a in blocking[:10]:
    print("  " + show(a))
sys.exit(1)
PY
