#!/usr/bin/env bash
# N parties in N network namespaces on one machine, each with its own address, joined by
# veth pairs to a bridge (itself in its own namespace, so the host's network is untouched):
# a multi-host run on one machine. Optionally shapes each party's link with netem.sh.
#
#   scripts/netns.sh N [--profile NAME | --rate-mbit R --delay-ms D] [--model M]
#                      [--batch B] [--timeout-s T] [--bin PATH] [-- extra party args]
#
# Party i gets 10.77.0.(i+1) in namespace mpcpipe-<pid>-i and runs
# `mpc-pipe party --id i --parties <tmp>/parties.toml ...` there; results (one
# mpc-pipe-result line per party) are printed in party order. If any party fails, the
# others are stopped and the script exits non-zero. A trap removes the namespaces, the
# bridge and the temporary files on every exit (success, failure, Ctrl-C). Needs root.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "netns.sh: $*" >&2; exit 2; }

n="${1:-}"; [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 2 ] || die "usage: netns.sh N [options] (N >= 2)"
shift
profile=""; rate=""; delay=""; model="selftest"; batch=1; timeout_s=60
bin="${MPC_PIPE_BIN:-$here/../target/release/mpc-pipe}"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --rate-mbit) rate="$2"; shift 2 ;;
    --delay-ms) delay="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --timeout-s) timeout_s="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option $1" ;;
  esac
done
[ -x "$bin" ] || die "no mpc-pipe binary at $bin (build with cargo build --release, or --bin)"

tag="mpcpipe-$$"
br_ns="$tag-br"
tmp="$(mktemp -d)"
pids=()

cleanup() {
  local rc=$?
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  for i in $(seq 0 $((n - 1))); do ip netns del "$tag-$i" 2>/dev/null || true; done
  ip netns del "$br_ns" 2>/dev/null || true
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$br_ns"
ip -n "$br_ns" link add br0 type bridge
ip -n "$br_ns" link set br0 up
echo -n > "$tmp/parties.toml"
for i in $(seq 0 $((n - 1))); do
  ns="$tag-$i"
  ip netns add "$ns"
  ip link add "eth0" netns "$ns" type veth peer name "p$i" netns "$br_ns"
  ip -n "$br_ns" link set "p$i" master br0 up
  ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  printf '[[party]]\nid = %d\naddr = "10.77.0.%d:7000"\n\n' "$i" "$((i + 1))" >> "$tmp/parties.toml"
done

# Shaping: netem where available; else tbf for the rate and the in-process emulator for
# the delay (netem.sh prints the latency the emulator must add).
emu_latency=""
if [ -n "$profile$rate$delay" ]; then
  shape=()
  [ -n "$profile" ] && shape+=(--profile "$profile")
  [ -n "$rate" ] && shape+=(--rate-mbit "$rate")
  [ -n "$delay" ] && shape+=(--delay-ms "$delay")
  for i in $(seq 0 $((n - 1))); do
    out="$("$here/netem.sh" apply eth0 --netns "$tag-$i" "${shape[@]}")"
  done
  emu_latency="$(echo "$out" | sed -n 's/^emulator-latency-ms=//p' | tail -1)"
fi

session="$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')"
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$tmp/key"
chmod 600 "$tmp/key"

for i in $(seq 0 $((n - 1))); do
  args=(party --id "$i" --parties "$tmp/parties.toml" --session "$session" --key-file "$tmp/key"
        --model "$model" --batch "$batch" --timeout-s "$timeout_s")
  if [ -n "$emu_latency" ] && [ "$emu_latency" != "0" ]; then args+=(--latency-ms "$emu_latency"); fi
  ip netns exec "$tag-$i" "$bin" "${args[@]}" "${extra[@]}" > "$tmp/out.$i" 2> "$tmp/err.$i" &
  pids[$i]=$!
done

# Wait for all (polling, so every exit status is collected); on the first failure the
# trap stops the rest.
status=()
finished=0
failed=""
while [ "$finished" -lt "$n" ] && [ -z "$failed" ]; do
  for i in $(seq 0 $((n - 1))); do
    if [ -z "${status[$i]:-}" ] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
      rc=0; wait "${pids[$i]}" || rc=$?
      status[$i]=$rc
      finished=$((finished + 1))
      [ "$rc" -ne 0 ] && failed="$i"
    fi
  done
  [ "$finished" -lt "$n" ] && [ -z "$failed" ] && sleep 0.05
done
if [ -n "$failed" ]; then
  echo "netns.sh: party $failed failed; stopping the others" >&2
  for i in $(seq 0 $((n - 1))); do
    [ -s "$tmp/err.$i" ] && { echo "--- party $i stderr:" >&2; tail -n 5 "$tmp/err.$i" >&2; }
  done
  exit 1
fi
for i in $(seq 0 $((n - 1))); do cat "$tmp/out.$i"; done
