#!/usr/bin/env bash
# Installs the system tools some tests use, when they are missing and this
# runs as root with apt-get (as CI does). Without them those tests print
# SKIPPED and pass nothing; with them they run for real.
#   iproute2: ip netns, veth (the network tests)
#   systemd:  systemd-analyze, systemd-sysusers, systemd-tmpfiles (install test)
#   passwd:   userdel, groupdel (install test)
#   nftables, conntrack: the NAT and NAT rebinding in the network lab
#   chromium, chromium-driver: the dashboard's browser tests (WebDriver)
#   postgresql: the state store's PostgreSQL engine and the hot-standby tests
#               (initdb + postgres in a temporary directory)
#   python3:    the web server a job starts in the port-forward test
set -euo pipefail
missing=()
command -v ip >/dev/null || missing+=(iproute2)
for t in systemd-analyze systemd-sysusers systemd-tmpfiles; do
    command -v "$t" >/dev/null || { missing+=(systemd); break; }
done
command -v userdel >/dev/null || missing+=(passwd)
command -v nft >/dev/null || command -v iptables >/dev/null || missing+=(nftables)
command -v conntrack >/dev/null || missing+=(conntrack)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v python3 >/dev/null || missing+=(python3)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "test-deps: missing ${missing[*]}; the tests that need them will say SKIPPED" >&2
    exit 0
fi
echo "test-deps: installing ${missing[*]}" >&2
DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
