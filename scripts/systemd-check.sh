#!/usr/bin/env bash
# voiced under a real systemd, not only systemd-analyze: a Debian bookworm root
# (debootstrap: systemd, dbus, python3) booted with systemd-nspawn, voiced put in
# /opt/voiced/venv as `pip install` would, installed with `voiced service install`,
# and the unit driven with systemctl through nsenter. It shows:
#   * the unit is active only after READY=1 and answers on its HTTP API, with the
#     token from a root-only credential file, not the world-readable config;
#   * it hears the configured input (a FIFO fed with "Hey Jarvis. What time is
#     it?" then silence, as `[audio] input = "-"`) and answers (the turn, intent
#     "time", in /api/status; the reply in the configured output WAV);
#   * watchdog, DynamicUser, ProtectHome and the credentials are in force
#     (systemctl show, /run/credentials), plus `systemd-analyze security`;
#   * `voiced service reload` re-reads the config in the same process;
#   * `systemctl stop` ends it cleanly (Result=success);
#   * a stalled input (the feeder stopped) makes systemd's watchdog restart it;
#   * the state directory survives.
#
# Usage (root): scripts/systemd-check.sh
# Needs: debootstrap, systemd-nspawn (apt-get install debootstrap systemd-container),
# the project's venv ($VOICED_VENV, default .venv) and the prepared test models
# ($VOICED_TEST_MODELS_DIR, default $VOICED_TEST_CACHE_DIR/test-models, as the tests use).
# Cost: the root (~300 MB, plus ~700 MB of the venv's packages) is built once, about
# a minute of debootstrap with a nearby mirror, and cached in $VOICED_NSPAWN_CACHE
# (default /var/cache/voiced-nspawn); each check then takes about a minute.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VOICED_VENV:-$REPO/.venv}"
CACHE_DIR="${VOICED_TEST_CACHE_DIR:-$REPO/.cache}"
MODELS="${VOICED_TEST_MODELS_DIR:-$CACHE_DIR/test-models}"
NSPAWN_CACHE="${VOICED_NSPAWN_CACHE:-/var/cache/voiced-nspawn}"
TEMPLATE="$NSPAWN_CACHE/bookworm"
MIRROR="${VOICED_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WATCHDOG_S=6
SITE=lib/python3.11/site-packages

say() { printf '>> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (systemd-nspawn and debootstrap need it)"
for tool in debootstrap systemd-nspawn nsenter; do
  command -v "$tool" >/dev/null || fail "$tool is missing: apt-get install debootstrap systemd-container"
done
[ -x "$VENV/bin/python" ] || fail "no venv at $VENV: run scripts/test.sh first"
[ -d "$MODELS/whisper-tiny.en" ] || fail "no test models in $MODELS: run the test suite once"

# --- the cached root ------------------------------------------------------------
if [ ! -e "$TEMPLATE/.voiced-root" ]; then
  say "debootstrap bookworm into $TEMPLATE (once)"
  rm -rf "$TEMPLATE.tmp"
  mkdir -p "$NSPAWN_CACHE"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,python3-venv \
    bookworm "$TEMPLATE.tmp" "$MIRROR" >"$NSPAWN_CACHE/debootstrap.log" 2>&1 \
    || fail "debootstrap failed; see $NSPAWN_CACHE/debootstrap.log"
  rm -rf "$TEMPLATE"
  mv "$TEMPLATE.tmp" "$TEMPLATE"
  touch "$TEMPLATE/.voiced-root"
fi
# The dependencies, as `pip install` would put them in /opt/voiced/venv (cp311
# wheels: the host's Python 3.11 and bookworm's are ABI-compatible). Rebuilt when
# the venv's packages change; voiced itself is copied fresh for every check.
deps_key="$(ls "$VENV/$SITE" | sha256sum | cut -c1-16)"
if [ "$(cat "$TEMPLATE/.voiced-deps" 2>/dev/null)" != "$deps_key" ]; then
  say "the venv's packages into $TEMPLATE/opt/voiced/venv (once per dependency change)"
  rm -rf "$TEMPLATE/opt/voiced/venv"
  chroot "$TEMPLATE" /usr/bin/python3 -m venv --without-pip /opt/voiced/venv
  (cd "$VENV/$SITE" && tar --exclude='voiced' --exclude='voiced-*' --exclude='*voiced*.pth' \
      --exclude='__editable__*' --exclude='mypy*' --exclude='matplotlib*' --exclude='ruff*' \
      --exclude='hypothesis*' --exclude='fontTools*' --exclude='__pycache__' -cf - .) \
    | tar -C "$TEMPLATE/opt/voiced/venv/$SITE" -xf -
  echo "$deps_key" >"$TEMPLATE/.voiced-deps"
fi

# --- this check's machine: an overlay on the cached root -------------------------
WORK="$(mktemp -d /var/tmp/voiced-nspawn.XXXXXX)"
ROOT="$WORK/root"
mkdir -p "$WORK/upper" "$WORK/work" "$ROOT"
mount -t overlay overlay -o "lowerdir=$TEMPLATE,upperdir=$WORK/upper,workdir=$WORK/work" "$ROOT"
NSPAWN_PID=""
LEADER=""
cleanup() {
  if [ -n "$LEADER" ]; then
    nsenter -t "$LEADER" -a systemctl poweroff >/dev/null 2>&1 || true
  fi
  if [ -n "$NSPAWN_PID" ]; then
    for _ in $(seq 1 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$NSPAWN_PID" 2>/dev/null || true
    wait "$NSPAWN_PID" 2>/dev/null || true
  fi
  umount "$ROOT" 2>/dev/null || umount -l "$ROOT" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say "voiced into /opt/voiced/venv (the wheel's layout)"
pkg="$ROOT/opt/voiced/venv/$SITE/voiced"
cp -a "$REPO/voiced" "$pkg"
mkdir -p "$pkg/_data"
cp -a "$REPO/models/manifest.toml" "$pkg/_data/manifest.toml"
cp -a "$REPO/hardware" "$pkg/_data/hardware"
cp -a "$REPO/systemd" "$pkg/_data/systemd"
cat >"$ROOT/opt/voiced/venv/bin/voiced" <<'EOF'
#!/opt/voiced/venv/bin/python
import sys
from voiced.cli.main import main
sys.exit(main())
EOF
chmod 755 "$ROOT/opt/voiced/venv/bin/voiced"

say "the models, as a finished \`voiced models prepare\` leaves them"
mkdir -p "$ROOT/var/lib/voiced"
cp -a "$MODELS" "$ROOT/var/lib/voiced/models"
rm -f "$ROOT/var/lib/voiced/models/.prepare.lock"

say "the microphone: a FIFO fed with speech, then silence"
mkdir -p "$ROOT/srv/voiced"
"$VENV/bin/python" - "$ROOT/srv/voiced/speech.raw" "$MODELS" <<'EOF'
import sys
from pathlib import Path
from voiced.engines.loader import load_engines
from voiced.models.manifest import Role
from voiced.settings import Settings
from voiced.speech_synth import compose
tts = load_engines(Settings(), Path(sys.argv[2]), {Role.TTS}).tts
assert tts is not None
Path(sys.argv[1]).write_bytes(compose(tts, [1.0, "Hey Jarvis.", 0.4, "What time is it?", 2.0]))
EOF

say "the config (world-readable, no secret) and the token (a root-only credential)"
mkdir -p "$ROOT/etc/voiced/credentials" "$ROOT/etc/systemd/system/voiced.service.d"
chmod 700 "$ROOT/etc/voiced/credentials"
TOKEN="check-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$TOKEN" >"$ROOT/etc/voiced/credentials/http_token"
chmod 600 "$ROOT/etc/voiced/credentials/http_token"
cat >"$ROOT/etc/voiced/voiced.toml" <<'EOF'
[audio]
input = "-"
output = "/var/lib/voiced/replies.wav"
[slm]
enabled = false
[http]
listen = "127.0.0.1:8765"
EOF
chmod 644 "$ROOT/etc/voiced/voiced.toml"
# The feeder: stdin of the unit is the FIFO; a shorter watchdog so the stall shows soon.
cat >"$ROOT/etc/systemd/system/voiced.service.d/check.conf" <<EOF
[Service]
StandardInput=file:/run/voiced-mic.fifo
WatchdogSec=$WATCHDOG_S
RestartSec=1
EOF

say "boot bookworm with systemd-nspawn"
systemd-nspawn --boot --register=no --keep-unit --private-network --quiet \
  -D "$ROOT" >"$WORK/console.log" 2>&1 &
NSPAWN_PID=$!
for _ in $(seq 1 200); do
  LEADER="$( (ps -o pid= --ppid "$NSPAWN_PID" 2>/dev/null || true) | head -1 | tr -d ' ')"
  [ -n "$LEADER" ] && [ "$(cat "/proc/$LEADER/comm" 2>/dev/null)" = systemd ] && break
  LEADER=""
  sleep 0.1
done
[ -n "$LEADER" ] || fail "the container did not boot: $(tail -5 "$WORK/console.log")"
ct() { nsenter -t "$LEADER" -a -- "$@"; }
state=""
for _ in $(seq 1 600); do  # the bus appears a moment after PID 1 does
  state="$(ct timeout 120 systemctl is-system-running --wait 2>/dev/null || true)"
  [ -n "$state" ] && break
  sleep 0.2
done
[ "$state" = running ] || [ "$state" = degraded ] || fail "systemd in the container: $state"
say "container systemd: $state"

ct mkfifo -m 600 /run/voiced-mic.fifo
# Each time the service opens the FIFO it hears the speech again, then silence.
ct systemd-run --quiet --unit=fake-mic sh -c \
  'while :; do cat /srv/voiced/speech.raw /dev/zero > /run/voiced-mic.fifo; done'

journal() { ct journalctl -u voiced --no-pager -n 60 >&2 || true; }
show() { ct systemctl show voiced -p "$1" --value; }
api() {  # api PATH [TOKEN]
  ct /usr/bin/python3 - "$1" "${2:-}" <<'EOF'
import sys, urllib.request, urllib.error
req = urllib.request.Request("http://127.0.0.1:8765" + sys.argv[1])
if sys.argv[2]:
    req.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
EOF
}

say "voiced service install (as a new user would, from /opt/voiced/venv)"
ct env VOICED_CACHE_DIR=/nonexistent /opt/voiced/venv/bin/voiced service install \
  || { journal; fail "voiced service install failed"; }
[ "$(show ActiveState)" = active ] || { journal; fail "not active after install"; }
say "active after READY=1: $(show StatusText)"

status="$(api /api/status)"
case "$status" in 401*) ;; *) fail "the API answered without the token: $status" ;; esac
for _ in $(seq 1 300); do
  status="$(api /api/status "$TOKEN")"
  case "$status" in *'"intent": "time"'*) break ;; esac
  sleep 0.2
done
case "$status" in
  200*'"intent": "time"'*) say "heard the configured input and answered: intent time" ;;
  *) journal; fail "no answered turn in /api/status: ${status:0:600}" ;;
esac
[ "$(ct stat -c %s /var/lib/voiced/replies.wav)" -gt 44 ] || fail "no reply in the output WAV"

say "voiced service reload: intents and hooks re-read, the audio kept"
pid_before="$(show MainPID)"
ct /opt/voiced/venv/bin/voiced service reload || { journal; fail "reload failed"; }
for _ in $(seq 1 100); do
  ct journalctl -u voiced --no-pager | grep -q 'reloaded /etc/voiced/voiced.toml' && break
  sleep 0.1
done
ct journalctl -u voiced --no-pager | grep -m1 'reloaded /etc/voiced/voiced.toml' \
  || { journal; fail "no reload in the journal"; }
[ "$(show MainPID)" = "$pid_before" ] && [ "$(show ActiveState)" = active ] \
  || fail "the reload restarted the daemon"

say "hardening in force"
for property in DynamicUser=yes ProtectHome=yes ProtectSystem=strict PrivateTmp=yes \
                NoNewPrivileges=yes WatchdogUSec=${WATCHDOG_S}s Type=notify; do
  value="$(show "${property%%=*}")"
  [ "$value" = "${property#*=}" ] || fail "${property%%=*} is $value, not ${property#*=}"
  printf '   %s\n' "$property"
done
pid="$(show MainPID)"
uid="$(ct stat -c %u "/proc/$pid")"
[ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || fail "MainPID runs as uid $uid, not a dynamic user"
ct test -r "/run/credentials/voiced.service/voiced_http_token" || fail "no credential"
printf '   uid %s (dynamic), credential voiced_http_token in /run/credentials\n' "$uid"
ct stat -c '%a %n' /etc/voiced/voiced.toml /etc/voiced/credentials /etc/voiced/credentials/http_token
ct systemd-analyze security voiced.service --no-pager | tail -1

say "systemctl stop ends it cleanly"
ct systemctl stop voiced
[ "$(show Result)" = success ] || { journal; fail "stop: Result=$(show Result)"; }
[ "$(show ExecMainStatus)" = 0 ] || fail "stop: exit status $(show ExecMainStatus)"
ct test -s /var/lib/private/voiced/replies.wav || fail "the state directory did not survive"
say "stopped: Result=success, exit 0; /var/lib/private/voiced kept"

say "a stalled microphone: the watchdog restarts the unit"
ct systemctl start voiced
[ "$(show ActiveState)" = active ] || { journal; fail "not active after start"; }
before="$(show NRestarts)"
ct systemctl kill --signal=SIGSTOP fake-mic
for _ in $(seq 1 $((WATCHDOG_S * 10 + 100))); do
  [ "$(show NRestarts)" -gt "$before" ] && break
  sleep 0.1
done
[ "$(show NRestarts)" -gt "$before" ] || { journal; fail "no restart after the input stalled"; }
ct journalctl -u voiced --no-pager | grep -m1 -i 'watchdog timeout' || fail "not the watchdog"
ct systemctl kill --signal=SIGCONT fake-mic
for _ in $(seq 1 300); do [ "$(show ActiveState)" = active ] && break; sleep 0.2; done
[ "$(show ActiveState)" = active ] || { journal; fail "not active again once the input resumed"; }
say "restarted by the watchdog (NRestarts $before -> $(show NRestarts)) and active again"
ct systemctl stop voiced
say "all checks passed"
