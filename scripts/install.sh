#!/usr/bin/env bash
# Install (or uninstall) OpenClaw on this machine, or into a scratch root.
#
#   sudo scripts/install.sh                      # binary, user, units, homes, completions, man pages
#   sudo scripts/install.sh --uninstall          # remove what install put there; keep state and the user
#   sudo scripts/install.sh --uninstall --purge  # also the homes (CA keys!), /etc/openclaw and the user
#   scripts/install.sh --root DIR ...            # the same inside DIR (packaging, tests)
#
# Options: --bin PATH (default target/release/openclaw; build it with
# 'cargo build --release -p openclaw'), --root DIR.
#
# What it installs, all recorded in /usr/local/share/openclaw/installed-files:
#   /usr/local/bin/openclaw                      0755
#   /etc/systemd/system/openclaw-{gateway,node,moltbot,wecom}.service
#   /usr/lib/sysusers.d/openclaw.conf            system user and group 'openclaw'
#   /usr/lib/tmpfiles.d/openclaw.conf            the homes below, with owners and modes
#   bash, zsh and fish completions; man pages; README, OPERATIONS, CLI docs
# and creates (never removed without --purge):
#   /var/lib/openclaw                            0755 root:root
#   /var/lib/openclaw/{gateway,moltbot,wecom}    0700 openclaw:openclaw
#   /var/lib/openclaw/node                       0700 root:root (the agent runs as root to drop jobs to their users)
#   /etc/openclaw                                0750 root:openclaw (bot secrets, 0600 files)
# It starts nothing: see docs/OPERATIONS.md for init, enroll and systemctl.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
root=""
bin="$repo/target/release/openclaw"
mode=install
purge=0

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="${2:?--root needs a directory}"; shift 2 ;;
        --bin) bin="${2:?--bin needs a path}"; shift 2 ;;
        --uninstall) mode=uninstall; shift ;;
        --purge) purge=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) die "unknown option $1; see --help" ;;
    esac
done

if [ -n "$root" ]; then
    mkdir -p "$root"
    root="$(cd "$root" && pwd)"
    [ "$root" != "/" ] || root=""
fi
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
    die "installing into / needs root; run it with sudo, or give --root DIR"
fi

R="$root"
manifest="$R/usr/local/share/openclaw/installed-files"
units=(openclaw-gateway openclaw-node openclaw-moltbot openclaw-wecom)
root_flag=()
[ -z "$R" ] || root_flag=(--root="$R")

systemd_running() { [ -z "$R" ] && [ -d /run/systemd/system ]; }

uninstall() {
    if systemd_running; then
        for u in "${units[@]}"; do
            systemctl disable --now "$u.service" 2>/dev/null || true
        done
    fi
    if [ -f "$manifest" ]; then
        while IFS= read -r f; do
            rm -f -- "$R$f"
        done < "$manifest"
        rm -f -- "$manifest"
    fi
    # Directories install made, if empty now.
    for d in /usr/local/share/openclaw /usr/local/share/doc/openclaw; do
        rmdir -- "$R$d" 2>/dev/null || true
    done
    if [ "$purge" = 1 ]; then
        rm -rf -- "$R/var/lib/openclaw" "$R/etc/openclaw"
        if grep -q '^openclaw:' "$R/etc/passwd" 2>/dev/null; then
            userdel "${root_flag[@]}" openclaw 2>/dev/null \
                || die "cannot remove the user openclaw; remove it with 'userdel openclaw'"
        fi
        if grep -q '^openclaw:' "$R/etc/group" 2>/dev/null; then
            groupdel "${root_flag[@]}" openclaw 2>/dev/null || true
        fi
        echo "removed OpenClaw, its state (CA and keys included) and its user"
    else
        echo "removed OpenClaw; kept /var/lib/openclaw (CA, keys, state), /etc/openclaw and the user openclaw (--purge removes them)"
    fi
    systemd_running && systemctl daemon-reload || true
}

put() { # put MODE SRC DEST: install one file and record it
    install -D -m "$1" -- "$2" "$R$3"
    echo "$3" >> "$manifest.new"
}

install_all() {
    [ -x "$bin" ] || die "no openclaw binary at $bin; build it with 'cargo build --release -p openclaw' or pass --bin PATH"
    "$bin" --version >/dev/null || die "$bin does not run on this machine"
    command -v systemd-sysusers >/dev/null || command -v useradd >/dev/null \
        || die "neither systemd-sysusers nor useradd is here; install systemd or passwd"
    mkdir -p "$(dirname "$manifest")"
    : > "$manifest.new"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT

    put 0755 "$bin" /usr/local/bin/openclaw
    for u in "${units[@]}"; do
        put 0644 "$here/systemd/$u.service" "/etc/systemd/system/$u.service"
    done

    cat > "$tmp/sysusers.conf" <<'EOF'
# OpenClaw: the gateway and the chat bots run as this user (the node agent runs as root).
u openclaw - "OpenClaw gateway and bots" /var/lib/openclaw /usr/sbin/nologin
EOF
    put 0644 "$tmp/sysusers.conf" /usr/lib/sysusers.d/openclaw.conf
    cat > "$tmp/tmpfiles.conf" <<'EOF'
# OpenClaw homes. Private keys inside are 0600 and refused when others can read them.
d /var/lib/openclaw          0755 root     root     -
d /var/lib/openclaw/gateway  0700 openclaw openclaw -
d /var/lib/openclaw/moltbot  0700 openclaw openclaw -
d /var/lib/openclaw/wecom    0700 openclaw openclaw -
d /var/lib/openclaw/node     0700 root     root     -
d /etc/openclaw              0750 root     openclaw -
EOF
    put 0644 "$tmp/tmpfiles.conf" /usr/lib/tmpfiles.d/openclaw.conf

    "$bin" completions bash > "$tmp/openclaw.bash"
    "$bin" completions zsh > "$tmp/_openclaw"
    "$bin" completions fish > "$tmp/openclaw.fish"
    put 0644 "$tmp/openclaw.bash" /usr/share/bash-completion/completions/openclaw
    put 0644 "$tmp/_openclaw" /usr/share/zsh/vendor-completions/_openclaw
    put 0644 "$tmp/openclaw.fish" /usr/share/fish/vendor_completions.d/openclaw.fish
    mkdir -p "$tmp/man"
    "$bin" man --out "$tmp/man" >/dev/null
    for page in "$tmp"/man/*.1; do
        put 0644 "$page" "/usr/local/share/man/man1/$(basename "$page")"
    done
    for doc in README.md docs/OPERATIONS.md docs/CLI.md; do
        [ -f "$repo/$doc" ] && put 0644 "$repo/$doc" "/usr/local/share/doc/openclaw/$(basename "$doc")"
    done

    # The user, then the homes with their owners (inside --root too).
    if command -v systemd-sysusers >/dev/null; then
        mkdir -p "$R/etc"
        systemd-sysusers "${root_flag[@]}" "$R/usr/lib/sysusers.d/openclaw.conf"
    elif ! grep -q '^openclaw:' "$R/etc/passwd" 2>/dev/null; then
        useradd "${root_flag[@]}" --system --user-group --home-dir /var/lib/openclaw \
            --no-create-home --shell /usr/sbin/nologin openclaw
    fi
    if command -v systemd-tmpfiles >/dev/null; then
        systemd-tmpfiles "${root_flag[@]}" --create "$R/usr/lib/tmpfiles.d/openclaw.conf"
    else
        install -d -m 0755 "$R/var/lib/openclaw"
        install -d -m 0700 "$R/var/lib/openclaw/node"
        for d in gateway moltbot wecom; do
            install -d -m 0700 "$R/var/lib/openclaw/$d"
            chown "$(id -u openclaw 2>/dev/null || echo 0):$(id -g openclaw 2>/dev/null || echo 0)" "$R/var/lib/openclaw/$d"
        done
        install -d -m 0750 "$R/etc/openclaw"
    fi
    sort -u "$manifest.new" > "$manifest"
    rm -f "$manifest.new"
    echo "$(wc -l < "$manifest") files installed; list in /usr/local/share/openclaw/installed-files" >&2
    systemd_running && systemctl daemon-reload || true
    cat <<'EOF'
installed. Next, on the gateway machine:
  sudo -u openclaw openclaw --home /var/lib/openclaw/gateway gateway init --listen 0.0.0.0:7443 --advertise HOST:7443
  sudo systemctl enable --now openclaw-gateway
on each node:
  sudo openclaw --home /var/lib/openclaw/node node enroll --token TOKEN --name NAME
  sudo systemctl enable --now openclaw-node
See docs/OPERATIONS.md (installed in /usr/local/share/doc/openclaw).
EOF
}

case "$mode" in
    install) install_all ;;
    uninstall) uninstall ;;
esac
