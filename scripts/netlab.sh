#!/usr/bin/env bash
# A multi-host lab on one machine: a gateway and three nodes, each in its
# own Linux network namespace, one of them behind a NAT. Needs root.
#
#   scripts/netlab.sh up        # namespaces, links, NAT, gateway, 3 enrolled nodes
#   scripts/netlab.sh status    # what exists, and 'openclaw node list'
#   scripts/netlab.sh down      # stop every process, remove every namespace and link
#   scripts/netlab.sh exec NS CMD...   # run CMD in namespace NS (gw, n1, n2, n3, rt, sw)
#
# Topology (addresses exist only inside namespaces this script creates;
# nothing is routed off the machine; the host's interfaces, routes and
# firewall are not touched):
#
#    P-gw 10.199.0.10 ─┐
#    P-n1 10.199.0.11 ─┤ bridge in P-sw (the "internet")
#    P-n2 10.199.0.12 ─┤
#    P-rt 10.199.0.20 ─┘── P-rt masquerades 10.199.1.0/24 (nftables, or iptables)
#                           └─ P-n3 10.199.1.2 (behind the NAT, default route via 10.199.1.1)
#
# Nodes reach the gateway only at 10.199.0.10. The gateway sees n3 as the
# router's public address.
#
# Environment: NETLAB_PREFIX (default ocl; keep it short, namespaces are
# P-gw ...), NETLAB_DIR (homes and logs; default /tmp/openclaw-netlab-P),
# OPENCLAW_BIN (default target/release/openclaw, else target/debug/openclaw),
# NETLAB_PORT (default 7443).
set -euo pipefail

P="${NETLAB_PREFIX:-ocl}"
DIR="${NETLAB_DIR:-/tmp/openclaw-netlab-$P}"
PORT="${NETLAB_PORT:-7443}"
GW_IP=10.199.0.10
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
BIN="${OPENCLAW_BIN:-}"
if [ -z "$BIN" ]; then
    if [ -x "$repo/target/release/openclaw" ]; then BIN="$repo/target/release/openclaw"; else BIN="$repo/target/debug/openclaw"; fi
fi
NSS=(sw gw n1 n2 rt n3)
case "$DIR" in
    ""|"/"|"$HOME"|/etc*|/usr*|/var|/root) echo "netlab: refusing NETLAB_DIR=$DIR (it is removed on down)" >&2; exit 1 ;;
esac
case "$P" in
    *[!a-z0-9]*|"") echo "netlab: NETLAB_PREFIX must be lowercase letters and digits" >&2; exit 1 ;;
esac
[ ${#P} -le 10 ] || { echo "netlab: NETLAB_PREFIX must be at most 10 characters" >&2; exit 1; }

die() { echo "netlab: $*" >&2; exit 1; }
ns() { echo "$P-$1"; }
in_ns() { local n="$1"; shift; ip netns exec "$(ns "$n")" "$@"; }
oc() { local n="$1" home="$2"; shift 2; in_ns "$n" "$BIN" --home "$DIR/$home" "$@"; }

need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces); run it with sudo"
    command -v ip >/dev/null || die "needs iproute2 (apt-get install iproute2)"
}

nat_tool() {
    if command -v nft >/dev/null; then echo nft
    elif command -v iptables >/dev/null; then echo iptables
    else die "needs nftables or iptables for the NAT (apt-get install nftables)"
    fi
}

# The NAT in the router namespace. $1: optional source-port range (a-b).
nat_rules() {
    local ports="${1:-}"
    case "$(nat_tool)" in
        nft)
            in_ns rt nft delete table ip netlab 2>/dev/null || true
            in_ns rt nft add table ip netlab
            in_ns rt nft add chain ip netlab post '{ type nat hook postrouting priority 100 ; }'
            if [ -n "$ports" ]; then
                in_ns rt nft add rule ip netlab post ip saddr 10.199.1.0/24 oifname eth0 meta l4proto udp masquerade to :"$ports"
                in_ns rt nft add rule ip netlab post ip saddr 10.199.1.0/24 oifname eth0 masquerade
            else
                in_ns rt nft add rule ip netlab post ip saddr 10.199.1.0/24 oifname eth0 masquerade
            fi
            ;;
        iptables)
            in_ns rt iptables -t nat -F POSTROUTING
            if [ -n "$ports" ]; then
                in_ns rt iptables -t nat -A POSTROUTING -s 10.199.1.0/24 -o eth0 -p udp -j MASQUERADE --to-ports "$ports"
            else
                in_ns rt iptables -t nat -A POSTROUTING -s 10.199.1.0/24 -o eth0 -j MASQUERADE
            fi
            ;;
    esac
}

up() {
    need_root
    [ -x "$BIN" ] || die "no openclaw binary at $BIN; build it with 'cargo build --release -p openclaw' or set OPENCLAW_BIN"
    nat_tool >/dev/null
    if ip netns list | grep -q "^$(ns gw)\b"; then die "a netlab with prefix $P is up; run '$0 down' first"; fi
    mkdir -p "$DIR"
    chmod 711 "$DIR"   # homes inside are 0700; jobs (as nobody) need to reach their work dirs
    trap 'echo "netlab: up failed; cleaning up" >&2; down >/dev/null 2>&1 || true' ERR
    for n in "${NSS[@]}"; do
        ip netns add "$(ns "$n")"
        in_ns "$n" ip link set lo up
    done
    in_ns sw ip link add br0 type bridge
    in_ns sw ip link set br0 up
    local -A addr=([gw]=10.199.0.10 [n1]=10.199.0.11 [n2]=10.199.0.12 [rt]=10.199.0.20)
    for n in gw n1 n2 rt; do
        # Both ends are made inside namespaces: no interface ever appears on the host.
        ip link add name eth0 netns "$(ns "$n")" type veth peer name "p-$n" netns "$(ns sw)"
        in_ns sw ip link set "p-$n" master br0
        in_ns sw ip link set "p-$n" up
        in_ns "$n" ip addr add "${addr[$n]}/24" dev eth0
        in_ns "$n" ip link set eth0 up
    done
    ip link add name eth1 netns "$(ns rt)" type veth peer name eth0 netns "$(ns n3)"
    in_ns rt ip addr add 10.199.1.1/24 dev eth1
    in_ns rt ip link set eth1 up
    in_ns n3 ip addr add 10.199.1.2/24 dev eth0
    in_ns n3 ip link set eth0 up
    in_ns n3 ip route add default via 10.199.1.1
    in_ns rt sysctl -qw net.ipv4.ip_forward=1
    nat_rules

    # The gateway, listening only on its namespace address.
    oc gw gateway gateway init --listen "$GW_IP:$PORT" --advertise "$GW_IP:$PORT" --name netlab-gw >/dev/null
    start_gateway
    local token
    token="$(oc gw gateway token create --auto-approve --uses 3 --labels cpu)"
    for n in n1 n2 n3; do
        oc "$n" "$n" node enroll --token "$token" --name "netlab-$n" --labels cpu --wait 30s >/dev/null
        # Jobs run as nobody, each with a uid of its own, as on a real node.
        sed -i 's/^# run_as = .*/run_as = "nobody"/; s/^# job_uids = /job_uids = /; s|^# work_dir = .*|work_dir = "'"$DIR/$n-work"'"|' "$DIR/$n/node.toml"
        start_node "$n"
    done
    trap - ERR
    for _ in $(seq 1 100); do
        if [ "$(oc gw gateway node list 2>/dev/null | grep -c ' connected ')" = 3 ]; then
            echo "netlab $P is up: gateway $GW_IP:$PORT, nodes netlab-n1 netlab-n2 netlab-n3 (n3 behind NAT); homes in $DIR"
            return 0
        fi
        sleep 0.2
    done
    oc gw gateway node list >&2 || true
    die "the nodes did not all connect; logs in $DIR/*.log"
}

start_gateway() {
    # Not through in_ns: a backgrounded function is a subshell, and $! must
    # be the process itself.
    ip netns exec "$(ns gw)" setsid "$BIN" --home "$DIR/gateway" gateway run >>"$DIR/gateway.log" 2>&1 < /dev/null &
    echo $! > "$DIR/gateway.pid"
    for _ in $(seq 1 100); do
        [ -s "$DIR/gateway/gateway.addr" ] && oc gw gateway whoami >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "the gateway did not start; see $DIR/gateway.log"
}

start_node() {
    local n="$1"
    ip netns exec "$(ns "$n")" setsid "$BIN" --home "$DIR/$n" node run >>"$DIR/$n.log" 2>&1 < /dev/null &
    echo $! > "$DIR/$n.pid"
}

stop_pid() { # stop_pid NAME [SIGNAL]
    local f="$DIR/$1.pid"
    [ -f "$f" ] || return 0
    local pid
    pid="$(cat "$f")"
    kill -"${2:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
}

down() {
    need_root
    for p in n1 n2 n3 gateway; do stop_pid "$p"; done
    # Anything else still running inside our namespaces (jobs, stray agents).
    for n in "${NSS[@]}"; do
        if ip netns list | grep -q "^$(ns "$n")\b"; then
            for pid in $(ip netns pids "$(ns "$n")" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        fi
    done
    for n in "${NSS[@]}"; do
        ip netns del "$(ns "$n")" 2>/dev/null || true
    done
    [ "${NETLAB_KEEP:-0}" = 1 ] || rm -rf -- "$DIR"
    echo "netlab $P is down"
}

status() {
    need_root
    local any=0
    for n in "${NSS[@]}"; do
        if ip netns list | grep -q "^$(ns "$n")\b"; then
            any=1
            echo "namespace $(ns "$n"): $(ip netns pids "$(ns "$n")" | wc -l) process(es); $(in_ns "$n" ip -br addr | grep -v '^lo' | tr -s ' ' | tr '\n' ';')"
        fi
    done
    [ "$any" = 1 ] || { echo "netlab $P is down"; return 0; }
    oc gw gateway node list || true
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    exec) shift; n="${1:?exec needs a namespace}"; shift; in_ns "$n" "$@" ;;
    # For tests: restart pieces, change the NAT.
    restart-gateway) need_root; stop_pid gateway "${2:-TERM}"; start_gateway ;;
    kill-node) need_root; stop_pid "${2:?node}" KILL ;;
    start-node) need_root; start_node "${2:?node}" ;;
    nat-ports) need_root; nat_rules "${2:-}" ;;
    oc) shift; n="${1:?namespace}"; home="${2:?home}"; shift 2; oc "$n" "$home" "$@" ;;
    *) sed -n '2,25p' "$0"; exit 2 ;;
esac
