#!/usr/bin/env bash
# voiced on arm64 (Raspberry Pi OS / Debian bookworm), checked on an x86-64 machine
# by qemu-user emulation: a Debian bookworm arm64 root made with debootstrap, then,
# inside it, as a new user of a board would:
#   install    the README's install (scripts/bootstrap.sh, then `pip install -e .`
#              of this checkout, copied in), with the registry's aarch64 wheels;
#   wheels     every native wheel imported, its version and the emulated CPU's
#              features printed;
#   prepare    `voiced models prepare` (downloads, sha256, the GGUF conversion);
#   verify     `voiced models verify`;
#   ask        `voiced ask "What is the capital of France?"` answers Paris;
#   demo       `voiced demo --unpaced`: the demo's spoken prompts (wake word,
#              question, command) through the whole pipeline, each turn finished
#              before the next is read, since an emulator cannot keep real time;
#              both turns must be answered, the question with Paris;
#   tests      a quick subset of the test suite on the real models.
# Every step is timed; the first failure stops the check with exit 1.
#
# It proves that voiced installs, prepares its models and answers correctly on
# aarch64 with the CPU features of a Pi 4 (cortex-a72, the default) or a Pi 5
# (cortex-a76). It says nothing about speed: emulation is 10-40x slower than the
# board.
#
# Usage (root): scripts/arm64-check.sh [--cpu cortex-a72|cortex-a76] [--fresh] [--qa] [--dry-run]
#   --cpu      the emulated CPU (default $VOICED_ARM64_CPU, else cortex-a72)
#   --fresh    remove the root's venv, models and caches first (not the base system)
#   --qa       then `voiced bench --qa` (the 62 questions, each alone) in the root,
#              to compare ARM's int8 answers with x86-64's (about 35 minutes more)
#   --dry-run  check the host and print the plan; change nothing
# Environment: VOICED_ARM64_CACHE  where the root is kept (default .cache/arm64 in
#                                  the checkout; about 3 GB with the models)
#              VOICED_DEBIAN_MIRROR (default http://deb.debian.org/debian)
# Needs: apt-get install qemu-user-static binfmt-support debootstrap
# Cost, measured on a 2-core x86-64 machine: see the README ("arm64 and boards").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VOICED_ARM64_CACHE:-$REPO/.cache/arm64}"
ROOT="$CACHE/bookworm-arm64"
MIRROR="${VOICED_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CPU="${VOICED_ARM64_CPU:-cortex-a72}"
SRC=/opt/voiced-src        # the checkout, inside the root
VENV=/opt/voiced/venv      # the venv, inside the root (kept between runs)
QUESTION="What is the capital of France?"
# The test subset: the native wheels, no torch, each real engine once (Piper speaks,
# Whisper hears it, the wake word fires once, the SLM knows a capital and streams),
# the int8 SLM against the numpy reference (ARM's int8 kernels are not x86's, so
# agreement, not equality). The pipeline tests run in real time, which emulation
# cannot keep up with (a 240 s limit ran out): the demo step covers the pipeline.
TESTS=(
  tests/test_native_wheels.py
  tests/test_no_torch.py
  tests/test_engines_real.py::test_piper_speaks_a_sentence
  tests/test_engines_real.py::test_whisper_transcribes_piper_speech
  tests/test_engines_real.py::test_hey_jarvis_fires_once_and_other_speech_does_not
  tests/test_engines_real.py::test_slm_knows_the_capital_of_france
  tests/test_engines_real.py::test_slm_stream_concatenates_to_the_reply
  tests/test_gguf_convert.py::test_int8_keeps_the_reference_token_in_its_top_five
)
# What the tests import beyond voiced's own dependencies (bounds as in pyproject's
# test extra; the whole extra would add mypy, ruff, schemathesis and matplotlib).
TEST_DEPS=("pytest>=8" "pytest-timeout>=2.3" "jiwer>=3.0")

DRY_RUN=0
FRESH=0
QA=0
usage() { sed -n '/^# Usage/,/^# Cost/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
while (($#)); do
  case "$1" in
    --cpu) [ $# -ge 2 ] || { echo "--cpu needs a value" >&2; exit 2; }; CPU="$2"; shift 2 ;;
    --cpu=*) CPU="${1#--cpu=}"; shift ;;
    --fresh) FRESH=1; shift ;;
    --qa) QA=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$CPU" in
  cortex-a72) PROFILE=rpi4 ;;
  cortex-a76) PROFILE=rpi5 ;;
  *) echo "--cpu must be cortex-a72 (Pi 4) or cortex-a76 (Pi 5), not '$CPU'" >&2; exit 2 ;;
esac

say() { printf '>> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# --- the host -------------------------------------------------------------------
problems=()
[ "$(id -u)" -eq 0 ] || problems+=("run as root (debootstrap, chroot and mount need it)")
for tool in debootstrap chroot unshare qemu-aarch64-static; do
  command -v "$tool" >/dev/null || problems+=("$tool is missing: apt-get install qemu-user-static binfmt-support debootstrap")
done
if command -v qemu-aarch64-static >/dev/null; then
  known_cpus="$(qemu-aarch64-static -cpu help 2>/dev/null || true)"
  grep -qw -- "$CPU" <<<"$known_cpus" || problems+=("this qemu does not know the CPU model $CPU")
fi
BINFMT=/proc/sys/fs/binfmt_misc
if ((${#problems[@]})); then
  printf 'FAIL: %s\n' "${problems[@]}" >&2
  exit 1
fi

STEPS=(root checkout install wheels prepare verify ask demo tests)
((QA)) && STEPS+=(qa)
if ((DRY_RUN)); then
  say "dry run: nothing is changed"
  say "root:  $ROOT ($([ -e "$ROOT/.voiced-root" ] && echo cached || echo "to be made with debootstrap from $MIRROR"))"
  say "cpu:   $CPU (QEMU_CPU), profile $PROFILE"
  say "steps: ${STEPS[*]}"
  say "tests: ${TESTS[*]}"
  exit 0
fi

# The kernel runs aarch64 programs through qemu only with binfmt_misc mounted and
# qemu-aarch64 registered (binfmt-support registers it when installed; the F flag
# means the interpreter is opened now, so it need not exist inside the root).
[ -e "$BINFMT/status" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" \
  || fail "cannot mount binfmt_misc on $BINFMT"
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  command -v update-binfmts >/dev/null && update-binfmts --enable qemu-aarch64 >/dev/null 2>&1
  [ -e "$BINFMT/qemu-aarch64" ] \
    || fail "qemu-aarch64 is not registered with binfmt_misc: apt-get install binfmt-support qemu-user-static"
fi
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" \
  || fail "qemu-aarch64 is registered without the F flag; reinstall qemu-user-static"

# --- timing -----------------------------------------------------------------------
TIMINGS=()
step_start_s=0
begin() { say "[$1] $2"; step_name="$1"; step_start_s="$(date +%s.%N)"; }
end() {
  local took_s
  took_s="$(awk -v a="$step_start_s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')"
  TIMINGS+=("$(printf '%-9s %5s s' "$step_name" "$took_s")")
  say "[$step_name] ok in ${took_s} s"
}
summary() {
  printf '\nstep timings (%s, qemu-user on %s):\n' "$CPU" "$(uname -m)"
  printf '  %s\n' "${TIMINGS[@]}"
}
check_start_s="$(date +%s)"

# The board's /proc/cpuinfo. qemu-user passes the host's through, and the CPU
# detection inside onnxruntime and TFLite (pytorch's cpuinfo) reads it together
# with /sys: given an x86 text with an aarch64 CPU, onnxruntime 1.28 and newer
# crash on import and pyopen-wakeword's TFLite crashes on its first frame. A board
# shows its own cores, so the check shows what a Raspberry Pi 4 (4x Cortex-A72, no
# crypto extensions) or 5 (4x Cortex-A76) shows.
CPUINFO="$CACHE/cpuinfo-$CPU"
write_cpuinfo() {
  local features variant part revision model i
  if [ "$CPU" = cortex-a72 ]; then
    features="fp asimd evtstrm crc32 cpuid"; variant=0x0; part=0xd08; revision=3
    model="Raspberry Pi 4 Model B Rev 1.5"
  else
    features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
    variant=0x4; part=0xd0b; revision=1; model="Raspberry Pi 5 Model B Rev 1.0"
  fi
  for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
    printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
  done
  printf 'Model\t\t: %s\n' "$model"
}

# Runs a command as root inside the arm64 root, in a private mount namespace so its
# mounts (proc with the board's cpuinfo, sys read-only, dev, shared memory, tmp)
# vanish when it ends, however it ends.
in_root() {
  # shellcheck disable=SC2016  # the inner script expands its own arguments
  unshare --mount --propagation private -- /bin/sh -ec '
    root="$1"; cpuinfo="$2"; shift 2
    mount -t proc proc "$root/proc"
    mount --bind "$cpuinfo" "$root/proc/cpuinfo"
    mount -t sysfs -o ro sysfs "$root/sys"
    mount --bind /dev "$root/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
    mount -t tmpfs tmpfs "$root/tmp"
    exec chroot "$root" "$@"' in_root "$ROOT" "$CPUINFO" \
    /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb QEMU_CPU="$CPU" \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
      PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
      PIP_DEFAULT_TIMEOUT=180 VOICED_VENV="$VENV" \
      VOICED_TEST_CACHE_DIR=/root/.cache/voiced \
      VOICED_TEST_MODELS_DIR=/root/.local/share/voiced/models \
      /bin/bash -ec "$1"
}

# --- root: the cached Debian bookworm arm64 base ----------------------------------
begin root "Debian bookworm arm64 in $ROOT"
if [ ! -e "$ROOT/.voiced-root" ]; then
  say "debootstrap --arch=arm64 (once; about 3 minutes)"
  mkdir -p "$CACHE"
  rm -rf "$ROOT.tmp"
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,libportaudio2,ca-certificates \
    bookworm "$ROOT.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || fail "debootstrap failed; see $CACHE/debootstrap.log"
  rm -rf "$ROOT"
  mv "$ROOT.tmp" "$ROOT"
  touch "$ROOT/.voiced-root"
fi
# The host's CA bundle (the registry may be reached through a proxy that signs with
# its own CA) and its resolver.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
write_cpuinfo >"$CPUINFO"
machine="$(in_root 'uname -m')"
[ "$machine" = aarch64 ] || fail "the root runs as '$machine', not aarch64"
if ((FRESH)); then
  say "--fresh: removing the venv, the models and the caches in the root"
  rm -rf "$ROOT$VENV" "$ROOT/root/.cache" "$ROOT/root/.local/share/voiced"
fi
end

# --- checkout: this working tree, copied in -----------------------------------------
begin checkout "this checkout into $SRC"
rm -rf "$ROOT$SRC"
mkdir -p "$ROOT$SRC"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
  # Tracked and untracked files, not what git ignores (.venv, .cache, build output).
  git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | (cd "$REPO" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) \
    | tar -C "$ROOT$SRC" -xf -
else
  tar -C "$REPO" --exclude=./.venv --exclude=./.cache -cf - . | tar -C "$ROOT$SRC" -xf -
fi
[ -f "$ROOT$SRC/pyproject.toml" ] || fail "the copy of the checkout has no pyproject.toml"
end

# --- install: as the README says ---------------------------------------------------
begin install "scripts/bootstrap.sh and pip install -e . (the README's install)"
in_root "cd $SRC && source scripts/bootstrap.sh && \"\$VENV/bin/python\" -m pip install -q -e ." \
  || fail "installing voiced in the arm64 root failed (output above)"
end

# --- wheels: every native wheel imports on this CPU ----------------------------------
begin wheels "the native wheels import on $CPU"
in_root "$VENV/bin/python - <<'EOF'
import ctypes, importlib, importlib.metadata as md, platform, re
# AT_HWCAP: the CPU features the emulated CPU reports (asimddp is in the A76, not the A72).
hwcap = ctypes.CDLL(None).getauxval(16)
names = {1: 'fp', 2: 'asimd', 8: 'aes', 128: 'crc32', 256: 'atomics', 512: 'fphp',
         1024: 'asimdhp', 1 << 20: 'asimddp', 1 << 22: 'sve'}
print('  machine', platform.machine(), '; cpu features:', ' '.join(n for b, n in names.items() if hwcap & b))
for dist, module in [('numpy', 'numpy'), ('onnxruntime', 'onnxruntime'), ('ctranslate2', 'ctranslate2'),
                     ('tokenizers', 'tokenizers'), ('soxr', 'soxr'), ('webrtcvad-wheels', 'webrtcvad'),
                     ('pymicro-wakeword', 'pymicro_wakeword'), ('pyopen-wakeword', 'pyopen_wakeword'),
                     ('av', 'av'), ('piper-tts', 'piper'), ('pywebrtc-audio', 'pywebrtc_audio')]:
    importlib.import_module(module)
    print(f'  {dist:18} {md.version(dist):10} imports')
# The newest glibc any installed wheel asks for: JetPack 6 (Jetson Orin) has 2.35.
needs = []
for d in md.distributions():
    for line in (d.read_text('WHEEL') or '').splitlines():
        found = re.search(r'manylinux_(\\d+)_(\\d+)_aarch64', line)
        if found:
            needs.append(((int(found[1]), int(found[2])), d.metadata['Name']))
newest, who = max(needs)
print(f'  newest glibc a wheel needs: {newest[0]}.{newest[1]} ({who})')
if newest > (2, 35):
    raise SystemExit(f'{who} needs glibc {newest[0]}.{newest[1]}: JetPack 6 (glibc 2.35) cannot install it')
EOF" || fail "a native wheel does not import on $CPU (a SIGSEGV or SIGILL shows as exit 139 or 132)"
end

# --- prepare, verify -------------------------------------------------------------------
begin prepare "voiced models prepare"
in_root "$VENV/bin/voiced models prepare" || fail "voiced models prepare failed"
end
begin verify "voiced models verify"
in_root "$VENV/bin/voiced models verify" || fail "voiced models verify failed"
end

# --- ask -----------------------------------------------------------------------------------
begin ask "voiced ask --profile $PROFILE \"$QUESTION\""
answer="$(in_root "$VENV/bin/voiced ask --profile $PROFILE '$QUESTION'")" || fail "voiced ask failed: $answer"
printf '  %s\n' "$answer"
grep -qi paris <<<"$answer" || fail "the answer does not name Paris"
end

# --- demo: the whole pipeline on the spoken prompts, unpaced -------------------------------
begin demo "voiced demo --profile $PROFILE --unpaced (wake word, question, command; not in real time)"
# Shown as it runs (about 10 minutes under emulation) and kept for the checks below.
in_root "cd /root && $VENV/bin/voiced demo --profile $PROFILE --unpaced --output /root/voiced-demo.wav" \
  2>&1 | tee "$CACHE/demo.log" || fail "voiced demo failed (a turn without a reply exits 1)"
demo_out="$(cat "$CACHE/demo.log")"
turns="$(grep -c '^turn [0-9]*: heard' <<<"$demo_out" || true)"
[ "$turns" = 2 ] || { printf '%s\n' "$demo_out" >&2; fail "the demo gave $turns turns, not 2"; }
grep -A1 '^turn 1:' <<<"$demo_out" | grep -qi paris || fail "the demo's first turn does not name Paris"
end

# --- tests -------------------------------------------------------------------------------------
begin tests "pytest ${TESTS[*]}"
in_root "cd $SRC && $VENV/bin/python -m pip install -q $(printf "'%s' " "${TEST_DEPS[@]}") && \
  $VENV/bin/python -m pytest -q -p no:cacheprovider --durations=5 ${TESTS[*]}" \
  || fail "tests failed in the arm64 root (output above)"
end

if ((QA)); then
  # The same settings as on x86-64 (`voiced bench --qa --profile none`): the default
  # tier, int8, so only the kernels differ. The report lands in the cache, by CPU.
  begin qa "voiced bench --qa --profile none (the 62 questions, each alone)"
  in_root "cd $SRC && $VENV/bin/voiced bench --qa --profile none --json /root/qa-$CPU.json" \
    || fail "the answer-quality benchmark failed in the arm64 root (output above)"
  cp "$ROOT/root/qa-$CPU.json" "$CACHE/qa-$CPU.json"
  say "answer quality on $CPU: $CACHE/qa-$CPU.json"
  end
fi

summary
say "all checks passed on aarch64 ($CPU) in $(($(date +%s) - check_start_s)) s"
