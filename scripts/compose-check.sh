#!/usr/bin/env bash
# compose-check.sh: CI's check of docker-compose.yml.
#
# Brings the fleet up (Redis, the downstream, three replicas of
# examples/service) in a compose project of its own on free ports of
# 127.0.0.1, switches the downstream's failure on, checks through the
# replicas' /status that they all tripped with one shared trip (the
# downstream saw about the threshold of failures, not one threshold per
# replica; each replica logged the trip once), switches the failure off,
# checks that they all recovered, and tears the project down (always).
#
# Run it through `make compose-check`, which builds the binaries and the
# Redis rootfs first. Without a Docker engine it skips, or fails when
# BREAKWATER_REQUIRE_DOCKER=1. It uses docker-compose (v1) when installed,
# else `docker compose` (v2); COMPOSE overrides the choice. Needs curl and jq.
#
# Tuning (environment): CHECK_FAILURES (threshold, default 10), CHECK_OPEN
# (open duration, default 5s), CHECK_INTERVAL (each replica's load interval,
# default 50ms), CHECK_DEADLINE (seconds for each wait, default 90).
set -euo pipefail

cd "$(dirname "$0")/.."

require=${BREAKWATER_REQUIRE_DOCKER:-0}
failures=${CHECK_FAILURES:-10}
open=${CHECK_OPEN:-5s}
interval=${CHECK_INTERVAL:-50ms}
deadline=${CHECK_DEADLINE:-90}

say() { printf '%s compose-check: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { say "FAIL: $*" >&2; exit 1; }

# skip_or_fail says why the check cannot run: a failure under
# BREAKWATER_REQUIRE_DOCKER=1, else a skip.
skip_or_fail() {
	if [[ $require == 1 ]]; then
		die "$1 and BREAKWATER_REQUIRE_DOCKER=1 (run with BREAKWATER_REQUIRE_DOCKER=0 to skip)"
	fi
	say "SKIP: $1 (BREAKWATER_REQUIRE_DOCKER=1 makes this a failure)"
	exit 0
}

command -v docker >/dev/null 2>&1 || skip_or_fail "no docker command on PATH"
docker info >/dev/null 2>&1 || skip_or_fail "no Docker engine answers (docker info failed)"
if [[ -z ${COMPOSE:-} ]]; then
	if command -v docker-compose >/dev/null 2>&1; then
		COMPOSE=docker-compose
	elif docker compose version >/dev/null 2>&1; then
		COMPOSE="docker compose"
	else
		skip_or_fail "neither docker-compose (v1) nor the docker compose plugin (v2) is installed"
	fi
fi
for tool in curl jq; do
	command -v $tool >/dev/null 2>&1 || die "$tool is not on PATH; install it (apt-get install $tool)"
done
for f in deploy/service/service deploy/downstream/downstream deploy/redis/rootfs/usr/local/bin/redis-server; do
	[[ -e $f ]] || die "$f is missing; run make compose-check (it builds the binaries and Redis's rootfs)"
done

# free_port prints a port of 127.0.0.1 that nothing listens on, not among
# the ports already chosen, and below the kernel's ephemeral range: a port
# in it may be taken by an outgoing connection before compose binds it.
chosen=" "
port_lo=10000 port_hi=32767
if read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && ((eph_lo - 1 - port_lo >= 1000)); then
	port_hi=$((eph_lo - 1))
fi
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((port_lo + RANDOM % (port_hi - port_lo + 1)))
		[[ $chosen == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			chosen+="$p "
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

export BREAKWATER_REDIS_PORT=$(free_port)
export BREAKWATER_DOWNSTREAM_PORT=$(free_port)
export BREAKWATER_SERVICE_1_PORT=$(free_port)
export BREAKWATER_SERVICE_2_PORT=$(free_port)
export BREAKWATER_SERVICE_3_PORT=$(free_port)
export BREAKWATER_FAILURES=$failures BREAKWATER_OPEN=$open BREAKWATER_LOAD_INTERVAL=$interval
project=breakwater-check-$$
compose() { $COMPOSE -p "$project" "$@"; }
services=(service-1 service-2 service-3)
ports=("$BREAKWATER_SERVICE_1_PORT" "$BREAKWATER_SERVICE_2_PORT" "$BREAKWATER_SERVICE_3_PORT")
down="http://127.0.0.1:$BREAKWATER_DOWNSTREAM_PORT"

ok=0
cleanup() {
	if [[ $ok != 1 ]]; then
		say "logs of the failed run:"
		compose logs --no-color --tail=200 2>&1 || true
	fi
	say "tearing down $project"
	compose down -v --remove-orphans --timeout 15 >/dev/null 2>&1 || say "warning: $COMPOSE down failed"
}
trap cleanup EXIT

start=$SECONDS
say "using $COMPOSE, project $project; replicas on ports ${ports[*]}, downstream on $BREAKWATER_DOWNSTREAM_PORT"
# quietly CMD...: runs CMD, showing its output only when it fails.
quietly() {
	local out
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out" >&2
		die "$* failed"
	fi
}
quietly compose build
quietly compose up -d

# status N prints replica N's /status (N from 0), or nothing.
status() { curl -sf --max-time 3 "http://127.0.0.1:${ports[$1]}/status" 2>/dev/null || true; }
stats() { curl -sf --max-time 3 "$down/stats" 2>/dev/null || true; }
post() { curl -sf --max-time 5 -X POST "$down/$1" >/dev/null || die "POST $down/$1 failed"; }

# wait_for WHAT CMD...: runs CMD until it succeeds, failing after $deadline
# seconds with WHAT and every replica's status.
wait_for() {
	local what=$1
	shift
	local until=$((SECONDS + deadline))
	until "$@"; do
		if ((SECONDS > until)); then
			for i in 0 1 2; do say "${services[$i]}: $(status "$i")"; done
			say "downstream: $(stats)"
			die "after ${deadline}s: $what"
		fi
		sleep 0.2
	done
}

# all_replicas FILTER: every replica's /status satisfies the jq FILTER.
all_replicas() {
	local i s
	for i in 0 1 2; do
		s=$(status "$i")
		[[ -n $s ]] || return 1
		jq -e "$1" >/dev/null <<<"$s" || return 1
	done
}

wait_for "the replicas did not all come up closed, sharing Redis, with successful calls" \
	all_replicas '.state == "closed" and .store_up and .shared.state == "closed" and .calls.succeeded > 0'
say "up: three replicas closed and calling ($((SECONDS - start))s)"

post reset
post fail
say "downstream failing"
wait_for "the replicas did not all open" \
	all_replicas '(.state == "open" or .state == "half-open") and (.shared.state == "open" or .shared.state == "half-open")'
say "all three replicas see the breaker open ($((SECONDS - start))s)"

# Every replica rejects calls of its own.
before=()
for i in 0 1 2; do before[$i]=$(status "$i" | jq '.calls.rejected'); done
for i in 0 1 2; do
	wait_for "${services[$i]} rejected no call while open" \
		bash -c "[[ \$(curl -sf --max-time 3 http://127.0.0.1:${ports[$i]}/status | jq '.calls.rejected') -gt ${before[$i]} ]]"
done
say "all three replicas reject calls"

# One shared trip: every extra trip is a failed probe, so trips = 1 + failed
# probes, read from a quiet moment (the downstream's counts unchanged around
# the read of the shared state).
one_trip() {
	local a b shared trips pf
	a=$(stats)
	shared=$(status 0)
	b=$(stats)
	[[ -n $a && -n $shared && $a == "$b" ]] || return 1
	trips=$(jq '.shared.counts.trips' <<<"$shared")
	pf=$(jq '.probe_failures' <<<"$a")
	if [[ $trips != $((1 + pf)) ]]; then
		die "shared trips $trips, want 1 + $pf failed probes: the replicas tripped more than once (shared $shared, downstream $a)"
	fi
	say "shared state: $trips trip(s), $pf failed probe(s): $(jq -c '.shared | {state, generation, reason, changed_by}' <<<"$shared")"
}
wait_for "no quiet moment to read the downstream's counts" one_trip

s=$(stats)
plain=$(($(jq '.failures' <<<"$s") - $(jq '.probe_failures' <<<"$s")))
say "downstream served $plain failures outside probes (threshold $failures; one breaker per replica would take $((3 * failures)))"
if ((plain < failures || plain >= 2 * failures)); then
	die "downstream served $plain failures outside probes, want from $failures to $((2 * failures - 1)) (the threshold, plus calls in flight when the trip was heard)"
fi
logs=$(compose logs --no-color "${services[@]}")
for svc in "${services[@]}"; do
	n=$(grep -c " $svc: breaker .*: closed -> open " <<<"$logs" || true)
	[[ $n == 1 ]] || die "$svc logged 'closed -> open' $n times, want 1"
done
say "each replica logged the one trip"

post heal
say "downstream healed"
wait_for "the replicas did not all recover" \
	all_replicas '.state == "closed" and .shared.state == "closed"'
s=$(stats)
(($(jq '.probes' <<<"$s") >= 1)) || die "the breaker closed without a probe reaching the downstream: $s"
for i in 0 1 2; do before[$i]=$(status "$i" | jq '.calls.succeeded'); done
for i in 0 1 2; do
	wait_for "${services[$i]} made no successful call after recovery" \
		bash -c "[[ \$(curl -sf --max-time 3 http://127.0.0.1:${ports[$i]}/status | jq '.calls.succeeded') -gt ${before[$i]} ]]"
done
say "all three replicas recovered and call the downstream again (probes seen: $(jq '.probes' <<<"$s"))"

ok=1
say "PASS in $((SECONDS - start))s"
