#!/usr/bin/env bash
# Builds the mgw Debian package (target/debian/mgw_VERSION-1_ARCH.deb) and verifies it.
#
#   scripts/package.sh             build, then verify the .deb in a throwaway directory
#   scripts/package.sh --install   also install it on this machine with dpkg -i (root only)
#
# Installs what it needs when missing: help2man, dpkg-dev and strace through apt-get, and
# cargo-deb through `cargo install` (the slow part: about 3 minutes on 2 cores, once).
# The man page is generated from the binary's own --help output, so it never goes stale.
# Every check that fails stops the script with a non-zero exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

INSTALL=0
for a in "$@"; do
    case $a in
        --install) INSTALL=1 ;;
        -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package: unknown argument $a" >&2; exit 2 ;;
    esac
done

T_START=$(date +%s)
step_t=""
step() { # Prints how long the previous step took, then the next step's name.
    local now
    now=$(date +%s)
    [ -z "$step_t" ] || echo "   ($((now - step_t)) s)"
    step_t=$now
    echo "== $*"
}
fail() { echo "package: FAILED: $*" >&2; exit 1; }

WORK=$(mktemp -d)
GW_PID=""
cleanup() {
    if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then kill "$GW_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------
step "tools"
need_apt=()
for p in help2man dpkg-dev strace; do
    dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || fail "need root or sudo to install ${need_apt[*]}"
        SUDO=sudo
    fi
    echo "   apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "   cargo install cargo-deb (takes a few minutes, once)"
    cargo install cargo-deb --locked --version '^3' --quiet
fi
echo "   $(cargo deb --version), $(help2man --version | head -1)"

# ---------------------------------------------------------------------------------------
step "build (release, -p mgw)"
cargo build --release -p mgw --quiet
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN=$TARGET_DIR/release/mgw
[ -x "$BIN" ] || fail "no binary at $BIN"
VERSION=$("$BIN" --version | awk '{print $2}')
echo "   $BIN ($VERSION)"

# ---------------------------------------------------------------------------------------
step "default configuration"
# packaging/mgw.toml is installed as /etc/mgw/mgw.toml: it must be the embedded default.
if ! "$BIN" config default | diff -u packaging/mgw.toml - >"$WORK/conf.diff"; then
    cat "$WORK/conf.diff" >&2
    fail "packaging/mgw.toml differs from 'mgw config default'; refresh it with:
    target/release/mgw config default > packaging/mgw.toml"
fi
"$BIN" config check packaging/mgw.toml >/dev/null || fail "packaging/mgw.toml does not pass 'mgw config check'"
echo "   packaging/mgw.toml = mgw config default, and passes mgw config check"

# ---------------------------------------------------------------------------------------
step "man page (help2man)"
STAGE=$ROOT/target/deb-staging # cargo-deb takes the man page from here (see Cargo.toml)
mkdir -p "$STAGE"
# clap's help text as roff: "Options:" headings, one tagged paragraph per option, and
# backslashes, dashes and leading dots escaped.
help_to_roff() {
    awk '
        function esc(s,   c) {
            gsub(/\\/, "\\e", s)
            gsub(/-/, "\\-", s)
            c = substr(s, 1, 1)
            if (c == "." || c == "\047") s = "\\&" s
            return s
        }
        /^[ \t]*$/ { next }
        /^Usage:/ { print ".PP"; print esc($0); next }
        /^[A-Z][A-Za-z ]*:$/ { print ".PP"; print "\\fB" esc($0) "\\fR"; next }
        /^ +[^ ]/ {
            line = $0
            sub(/^ +/, "", line)
            print ".TP"
            if (match(line, /  +/)) {
                print "\\fB" esc(substr(line, 1, RSTART - 1)) "\\fR"
                print esc(substr(line, RSTART + RLENGTH))
            } else {
                print "\\fB" esc(line) "\\fR"
            }
            next
        }
        { print ".PP"; print esc($0) }
    '
}
{
    echo "[COMMANDS]"
    for sub in run ctl status "config default" "config check"; do
        # shellcheck disable=SC2086 # $sub is deliberately split into words
        if COLUMNS=80 "$BIN" $sub --help >"$WORK/sub.txt" 2>/dev/null; then
            echo ".SS \"mgw $sub\""
            help_to_roff <"$WORK/sub.txt"
        fi
    done
    cat <<'EOF'
[FILES]
.TP
.I /etc/mgw/mgw.toml
The configuration read by the mgw service; \fBmgw config default\fR prints the built-in
default and \fBmgw config check\fR \fIFILE\fR validates a file.
.TP
.I /usr/lib/systemd/system/mgw.service
The systemd unit (installed disabled).
[SIGNALS]
.TP
.B SIGTERM, SIGINT
Delete all connections, send RSIP (forced, or graceful first when configured) to the
call agent and exit.
.TP
.B SIGHUP
Re-read the configuration file: call agents and the log filter apply at once; other
changes are reported as needing a restart.
[SEE ALSO]
.BR systemctl (1),
.BR journalctl (1),
/usr/share/doc/mgw/README.packaging.md.
EOF
} >"$WORK/include.h2m"
COLUMNS=80 help2man --no-info --section=1 \
    --name="MGCP 1.0 / RTP media gateway" \
    --include="$WORK/include.h2m" \
    --output="$STAGE/mgw.1" "$BIN"
# The page must render without warnings and show every subcommand.
rendered=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$STAGE/mgw.1" 2>"$WORK/man.err")
[ ! -s "$WORK/man.err" ] || { cat "$WORK/man.err" >&2; fail "man page renders with warnings"; }
for want in "mgw run" "mgw ctl" "mgw config check" "--call-agent" "/etc/mgw/mgw.toml" "SIGHUP"; do
    grep -qF -- "$want" <<<"$rendered" || fail "man page lacks \"$want\""
done
echo "   $STAGE/mgw.1 ($(wc -l <"$STAGE/mgw.1") lines)"

# ---------------------------------------------------------------------------------------
step "cargo deb"
cargo deb -p mgw --no-build --strip --quiet --output "$TARGET_DIR/debian/" >"$WORK/deb.out"
DEB=$(tail -1 "$WORK/deb.out")
[ -f "$DEB" ] || fail "cargo deb did not report a package file (got: $DEB)"
echo "   $DEB ($(du -h "$DEB" | cut -f1))"

# ---------------------------------------------------------------------------------------
step "verify the package"
dpkg-deb -c "$DEB" >"$WORK/contents"
for f in ./usr/bin/mgw ./usr/lib/systemd/system/mgw.service ./usr/lib/sysusers.d/mgw.conf \
    ./etc/mgw/mgw.toml ./usr/share/man/man1/mgw.1.gz ./usr/share/doc/mgw/README.md \
    ./usr/share/doc/mgw/README.packaging.md ./usr/share/doc/mgw/copyright; do
    grep -q " $f\$" "$WORK/contents" || fail "$f is not in the package"
done
grep -q '^-rwxr-xr-x 0/0 .* ./usr/bin/mgw$' "$WORK/contents" || fail "/usr/bin/mgw is not 0755 root:root"
dpkg-deb -I "$DEB" >"$WORK/info"
dpkg-deb -I "$DEB" conffiles | grep -qx /etc/mgw/mgw.toml || fail "/etc/mgw/mgw.toml is not a conffile"
grep -q '^ Section: net$' "$WORK/info" || fail "Section is not net"
grep -q '^ Depends: .*systemd | systemd-standalone-sysusers' "$WORK/info" || fail "Depends lacks systemd-sysusers"
mkdir "$WORK/ctl"
dpkg-deb -e "$DEB" "$WORK/ctl"
post=$WORK/ctl/postinst
[ -x "$post" ] || fail "no postinst"
! grep -q '#DEBHELPER#' "$post" || fail "postinst still has the #DEBHELPER# token"
grep -q 'systemd-sysusers .*mgw.conf' "$post" || fail "postinst does not create the mgw user"
grep -q 'deb-systemd-helper --quiet was-enabled mgw.service' "$post" || fail "postinst lacks the systemd fragment"
# enable = false: cargo-deb's "dont-enable" fragment only re-enables a unit an operator enabled.
grep -q 'deb-systemd-helper debian-installed mgw.service' "$post" || fail "postinst would enable mgw.service on installation"
sh -n "$post" || fail "postinst is not valid sh"
for s in prerm postrm; do [ ! -e "$WORK/ctl/$s" ] || sh -n "$WORK/ctl/$s" || fail "$s is not valid sh"; done
echo "   contents, modes, conffile, Depends and maintainer scripts are as expected"

# ---------------------------------------------------------------------------------------
step "extract and run the packaged binary (dpkg -x)"
R=$WORK/root
dpkg -x "$DEB" "$R"
PBIN=$R/usr/bin/mgw
[ "$("$PBIN" --version)" = "mgw $VERSION" ] || fail "packaged mgw --version is not 'mgw $VERSION'"
"$PBIN" config check "$R/etc/mgw/mgw.toml" >/dev/null || fail "packaged /etc/mgw/mgw.toml does not pass mgw config check"
zcat "$R/usr/share/man/man1/mgw.1.gz" | cmp -s - "$STAGE/mgw.1" || fail "packaged man page differs from the generated one"

if command -v systemd-analyze >/dev/null; then
    # Verify the unit against the extracted tree (so ExecStart= resolves to the packaged
    # binary); the host's targets stand in for the ones the unit is ordered against.
    # systemd-analyze exits 0 on unknown keys and bad values, so any output is a failure.
    cp -n /lib/systemd/system/*.target "$R/usr/lib/systemd/system/" 2>/dev/null || true
    systemd-analyze --man=no --root="$R" verify "$R/usr/lib/systemd/system/mgw.service" >"$WORK/verify" 2>&1 ||
        { cat "$WORK/verify" >&2; fail "systemd-analyze verify"; }
    [ ! -s "$WORK/verify" ] || { cat "$WORK/verify" >&2; fail "systemd-analyze verify reports problems"; }
    score=$(systemd-analyze security --offline=yes "$R/usr/lib/systemd/system/mgw.service" 2>/dev/null |
        sed -n 's/.*Overall exposure level for mgw.service: //p')
    echo "   systemd-analyze verify: clean; security exposure: ${score:-?}"
else
    echo "   systemd-analyze not found: unit not verified"
fi

# Run the packaged binary on loopback with the packaged configuration, under strace so
# that every system call it makes can be checked against the unit's SystemCallFilter.
# It creates a connection, is reloaded with SIGHUP and stopped with SIGTERM, as systemd does.
base=$((20000 + (RANDOM % 200) * 100))
LOG=$WORK/gw.log
NO_COLOR=1 strace -f -qq -o "$WORK/strace" -- "$PBIN" run --config "$R/etc/mgw/mgw.toml" \
    --mgcp-bind 127.0.0.1:0 --call-agent 127.0.0.1:9 --domain mgw --http-bind off \
    --rtp-bind 127.0.0.1 --rtp-ports "$base-$((base + 99))" --workers 1 --no-pin \
    >"$WORK/gw.out" 2>"$LOG" &
STRACE_PID=$!
GW_PID=""
port=""
for _ in $(seq 100); do
    [ -n "$GW_PID" ] || GW_PID=$(pgrep -P "$STRACE_PID" -x mgw || true)
    port=$(sed -n 's/^mgw: MGCP listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$WORK/gw.out")
    [ -n "$port" ] && [ -n "$GW_PID" ] && break
    kill -0 "$STRACE_PID" 2>/dev/null || { cat "$LOG" >&2; fail "packaged mgw exited at start"; }
    sleep 0.1
done
[ -n "$port" ] && [ -n "$GW_PID" ] || { cat "$LOG" >&2; fail "packaged mgw did not start"; }
backend=$(sed -n 's/.*dataplane started backend=\([A-Za-z_]*\).*/\1/p' "$LOG" | head -1)
printf 'CRCX * rtpbridge/1@mgw MGCP 1.0\nC: 77\nM: recvonly\n' |
    "$PBIN" ctl -g "127.0.0.1:$port" --timeout 5 >"$WORK/crcx" || fail "CRCX to the packaged mgw failed"
grep -q '^200 ' "$WORK/crcx" || { cat "$WORK/crcx" >&2; fail "CRCX was not answered 200"; }
kill -HUP "$GW_PID"
for _ in $(seq 50); do grep -q 'SIGHUP' "$LOG" && break; sleep 0.1; done
sleep 0.3
kill -0 "$GW_PID" 2>/dev/null || { cat "$LOG" >&2; fail "mgw did not survive SIGHUP (ExecReload)"; }
grep -q 'SIGHUP' "$LOG" || fail "mgw did not log the SIGHUP reload"
t0=$(date +%s)
kill -TERM "$GW_PID"
rc=0
wait "$STRACE_PID" || rc=$?
GW_PID=""
[ "$rc" -eq 0 ] || { cat "$LOG" >&2; fail "mgw exited $rc after SIGTERM"; }
stop_s=$(($(date +%s) - t0))
grep -q 'RSIP forced' "$LOG" || fail "mgw did not send RSIP forced on SIGTERM"
echo "   started (backend ${backend:-?}), CRCX 200, survived SIGHUP, SIGTERM: RSIP forced, exit 0 in ${stop_s} s"

if command -v systemd-analyze >/dev/null; then
    # The calls the unit allows: its SystemCallFilter= lines, groups expanded recursively.
    expand() {
        local s
        systemd-analyze syscall-filter "$1" 2>/dev/null | tail -n +2 | awk '$1 !~ /^#/ && NF {print $1}' |
            while read -r s; do
                case $s in @*) expand "$s" ;; *) echo "$s" ;; esac
            done
    }
    unit=$R/usr/lib/systemd/system/mgw.service
    : >"$WORK/allow"
    : >"$WORK/deny"
    while read -r line; do
        v=${line#SystemCallFilter=}
        list=$WORK/allow
        case $v in "~"*) list=$WORK/deny; v=${v#\~} ;; esac
        for item in $v; do
            case $item in @*) expand "$item" ;; *) echo "$item" ;; esac
        done >>"$list"
    done < <(grep '^SystemCallFilter=' "$unit")
    sort -u "$WORK/deny" -o "$WORK/deny"
    sort -u "$WORK/allow" | comm -23 - "$WORK/deny" >"$WORK/allowed"
    sed -n 's/^[0-9]* *\([a-z0-9_]*\)(.*/\1/p' "$WORK/strace" | sort -u >"$WORK/used"
    [ -s "$WORK/used" ] || fail "strace recorded no system call"
    comm -23 "$WORK/used" "$WORK/allowed" >"$WORK/blocked"
    if [ -s "$WORK/blocked" ]; then
        fail "the unit's SystemCallFilter would refuse calls mgw makes: $(tr '\n' ' ' <"$WORK/blocked")"
    fi
    grep -qx io_uring_setup "$WORK/allowed" || fail "SystemCallFilter does not allow io_uring_setup"
    echo "   SystemCallFilter allows all $(wc -l <"$WORK/used") system calls mgw made (io_uring ones: $(grep -c '^io_uring' "$WORK/used"))"
fi

# ---------------------------------------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
    step "install with dpkg -i"
    [ "$(id -u)" -eq 0 ] || fail "--install needs root"
    dpkg -i "$DEB"
    getent passwd mgw >/dev/null || fail "postinst did not create the mgw user"
    /usr/bin/mgw config check /etc/mgw/mgw.toml >/dev/null || fail "installed configuration does not check"
    [ -f /usr/lib/systemd/system/mgw.service ] || fail "unit not installed"
    echo "   installed; user $(getent passwd mgw); remove with: dpkg --purge mgw"
fi

step "done"
echo "package: $DEB"
echo "package: all checks passed in $(($(date +%s) - T_START)) s"
