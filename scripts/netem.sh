#!/usr/bin/env bash
# Real link shaping with tc: one-way delay and rate on a network interface (optionally
# inside a network namespace), from a profile of bench-configs/links.toml or given values.
#
#   scripts/netem.sh apply DEV [--netns NS] (--profile NAME | --rate-mbit R --delay-ms D)
#   scripts/netem.sh clear DEV [--netns NS]
#   scripts/netem.sh check            # is sch_netem available on this kernel?
#
# Shaping is on DEV's egress, so on a party's own interface it is that party's upload rate
# (shared by all its peers, as the paper's "10 Gb/s upload per party") and the one-way
# delay of everything it sends.
#
# Where the kernel has no sch_netem (e.g. this machine's), the rate is applied with tbf and
# the delay cannot be: the script says so and prints `emulator-latency-ms=D` as its last
# line; pass that value to mpc-pipe (--latency-ms D) so the in-process link emulator adds
# the delay. Needs root (CAP_NET_ADMIN) for apply/clear.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
links="${MPC_PIPE_LINKS:-$here/../bench-configs/links.toml}"

die() { echo "netem.sh: $*" >&2; exit 2; }

# profile_value NAME KEY: KEY of [[profile]] NAME in the links file (empty if absent).
profile_value() {
  awk -v want="$1" -v key="$2" '
    /^\[\[profile\]\]/ { name = ""; next }
    /^[ \t]*name[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*/, "", v); name = v; next }
    name == want && $0 ~ "^[ \t]*" key "[ \t]*=" { v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]*#.*/, "", v); print v; exit }
  ' "$links"
}

netem_available() {
  [ -d /sys/module/sch_netem ] && return 0
  modprobe -q sch_netem 2>/dev/null && return 0
  # Built in without a module entry: the qdisc kind is known to tc on a throwaway ns.
  local ns="netem-probe-$$"
  ip netns add "$ns" 2>/dev/null || return 1
  local ok=1
  ip netns exec "$ns" tc qdisc add dev lo root netem delay 1ms 2>/dev/null && ok=0
  ip netns del "$ns" 2>/dev/null || true
  return $ok
}

cmd="${1:-}"; shift || true
case "$cmd" in
  check)
    if netem_available; then echo "sch_netem: available"; else echo "sch_netem: missing (tbf for rate, in-process emulator for delay)"; fi
    exit 0 ;;
  apply|clear) ;;
  *) die "usage: netem.sh apply|clear DEV [--netns NS] (--profile NAME | --rate-mbit R --delay-ms D) | netem.sh check" ;;
esac

dev="${1:-}"; [ -n "$dev" ] || die "missing interface"; shift
ns=""; rate=""; delay=""; profile=""
while [ $# -gt 0 ]; do
  case "$1" in
    --netns) ns="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --rate-mbit) rate="$2"; shift 2 ;;
    --delay-ms) delay="$2"; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
run() { if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi; }

if [ "$cmd" = clear ]; then
  run tc qdisc del dev "$dev" root 2>/dev/null || true
  echo "cleared shaping on $dev${ns:+ (netns $ns)}"
  exit 0
fi

if [ -n "$profile" ]; then
  grep -q "name = \"$profile\"" "$links" || die "no profile '$profile' in $links"
  [ -n "$rate" ] || rate="$(profile_value "$profile" bandwidth_mbps)"
  [ -n "$delay" ] || delay="$(profile_value "$profile" latency_ms)"
fi
delay="${delay:-0}"

if [ -z "$rate" ] && awk "BEGIN{exit !($delay == 0)}"; then
  run tc qdisc del dev "$dev" root 2>/dev/null || true
  echo "unshaped: removed any shaping on $dev"
  exit 0
fi

if netem_available; then
  args=(netem delay "${delay}ms")
  [ -n "$rate" ] && args+=(rate "${rate}mbit")
  # A queue long enough for a bandwidth-delay product of large tensors.
  args+=(limit 100000)
  run tc qdisc replace dev "$dev" root "${args[@]}"
  echo "netem on $dev${ns:+ (netns $ns)}: delay ${delay} ms${rate:+, rate ${rate} Mbit/s}"
  echo "emulator-latency-ms=0"
else
  echo "sch_netem is not available on this kernel: the delay cannot be applied by tc." >&2
  if [ -n "$rate" ]; then
    # Bucket: at least 10 ms of traffic at the rate (and 64 KiB), so the rate holds.
    burst=$(awk -v r="$rate" 'BEGIN{b = r * 1e6 / 8 / 100; if (b < 65536) b = 65536; printf "%d", b}')
    run tc qdisc replace dev "$dev" root tbf rate "${rate}mbit" burst "$burst" latency 200ms
    echo "tbf on $dev${ns:+ (netns $ns)}: rate ${rate} Mbit/s (burst ${burst} B)" >&2
  fi
  echo "use the in-process link emulator for the delay: mpc-pipe ... --latency-ms ${delay}" >&2
  echo "emulator-latency-ms=${delay}"
fi
