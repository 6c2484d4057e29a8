# Breakwater's one test command is `make test`. It installs redis-server when
# it is missing, checks formatting, vets and lints the modules, runs the
# library's tests against real Redis, the fault-injection tests (faults/:
# Toxiproxy in front of real Redis), the linearizability check
# (linearizability/: porcupine on a history against real Redis) and the
# fleet tests (cluster_test/)
# against Redis and the example service in Docker, builds the examples, and
# checks docker-compose.yml's fleet (compose-check). `make fuzz` runs every
# fuzz target for FUZZTIME each.
#
# Developers without Docker: make test BREAKWATER_REQUIRE_DOCKER=0
# (the fleet tests then skip instead of failing).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

# Go lives in /usr/local/go on fresh machines; use it when go is not on PATH.
ifeq ($(shell command -v go 2>/dev/null),)
export PATH := /usr/local/go/bin:$(PATH)
endif

GO ?= go
# staticcheck 2025.1.1 (module version v0.6.1); it handles Go 1.26 code.
STATICCHECK_VERSION ?= v0.6.1
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# 1: a missing redis-server or Docker engine fails the tests instead of
# skipping them. Override on the command line, e.g. BREAKWATER_REQUIRE_DOCKER=0.
BREAKWATER_REQUIRE_REDIS ?= 1
BREAKWATER_REQUIRE_DOCKER ?= 1

TEST_FLAGS ?= -race -count=1 -timeout 5m
BENCH_FLAGS ?= -benchtime 1s

# The modules of the repository: the library, the fleet tests, the
# benchmarks, the fault-injection tests, the metrics, the linearizability
# check.
MODULES := . cluster_test bench faults otel linearizability

# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 1m

.PHONY: test lint fmt-check vet staticcheck test-root test-cluster examples \
	bench test-bench test-faults test-otel test-linearizability fuzz install-redis redis-rootfs compose-bin \
	compose-up compose-down compose-check

## test: the project's one test command (what CI runs).
test: install-redis lint test-root test-faults test-linearizability test-cluster test-bench test-otel examples compose-check

## lint: gofmt check, go vet and staticcheck on every module.
lint: fmt-check vet staticcheck

fmt-check:
	@files=$$(gofmt -l .); \
	if [[ -n "$$files" ]]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; \
		echo "$$files"; \
		exit 1; \
	fi

vet:
	@for m in $(MODULES); do \
		echo "go vet: $$m"; \
		(cd $$m && $(GO) vet ./...); \
	done

staticcheck:
	@for m in $(MODULES); do \
		echo "staticcheck $(STATICCHECK_VERSION): $$m"; \
		(cd $$m && $(STATICCHECK) ./...); \
	done

## test-root: the library's tests, against real redis-server child processes.
test-root: install-redis
	BREAKWATER_REQUIRE_REDIS=$(BREAKWATER_REQUIRE_REDIS) \
		$(GO) test $(TEST_FLAGS) ./...

## test-cluster: the fleet tests, against Redis in Docker (testcontainers-go).
test-cluster: install-redis
	cd cluster_test && \
	BREAKWATER_REQUIRE_REDIS=$(BREAKWATER_REQUIRE_REDIS) \
	BREAKWATER_REQUIRE_DOCKER=$(BREAKWATER_REQUIRE_DOCKER) \
	TESTCONTAINERS_RYUK_DISABLED=true \
		$(GO) test $(TEST_FLAGS) ./...

## test-faults: fault injection (faults/, its own module: Toxiproxy in
## process) between breakers and a real redis-server.
test-faults: install-redis
	cd faults && \
	BREAKWATER_REQUIRE_REDIS=$(BREAKWATER_REQUIRE_REDIS) \
		$(GO) test $(TEST_FLAGS) ./...

## test-linearizability: 16 instances run over 32,000 concurrent operations
## against one redis-server; porcupine checks the history against a model
## of the breaker (linearizability/, its own module), and catches a
## deliberately non-atomic record.
test-linearizability: install-redis
	cd linearizability && \
	BREAKWATER_REQUIRE_REDIS=$(BREAKWATER_REQUIRE_REDIS) \
		$(GO) test $(TEST_FLAGS) ./...

## test-otel: the OpenTelemetry metrics (otel/, its own module) and their
## Prometheus example.
test-otel:
	cd otel && $(GO) test $(TEST_FLAGS) ./...

## fuzz: run every fuzz target of the library for FUZZTIME (default 1m),
## one at a time (go test -fuzz takes one target per run). Their seed
## corpora (testdata/fuzz/) run with every `go test`.
fuzz:
	@for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' --exclude-dir=faults \
		--exclude-dir=cluster_test --exclude-dir=bench --exclude-dir=linearizability . | xargs -n1 dirname | sort -u); do \
		for name in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2); do \
			echo "fuzz: $$name in $$dir for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

## examples: build and run the examples, as a newcomer would.
examples:
	$(GO) build ./examples/... ./cmd/...
	cd otel && $(GO) build -o /dev/null ./examples/prometheus
	$(GO) run ./examples/quickstart
	$(GO) run ./examples/fleet -no-color

## test-bench: the benchmarks' own checks (commands per call), not the timings.
test-bench: install-redis
	cd bench && \
	BREAKWATER_REQUIRE_REDIS=$(BREAKWATER_REQUIRE_REDIS) \
		$(GO) test $(TEST_FLAGS) ./...

## bench: the benchmarks (bench/, its own module), against real Redis:
## breakwater beside sony/gobreaker, local and on Redis; see bench/README.md.
bench: install-redis
	cd bench && \
	BREAKWATER_REQUIRE_REDIS=$(BREAKWATER_REQUIRE_REDIS) \
		$(GO) test -run '^$$' -bench . $(BENCH_FLAGS) ./...

## install-redis: apt-get install redis-server unless it is on PATH.
install-redis:
	@if command -v redis-server >/dev/null 2>&1; then exit 0; fi; \
	echo "redis-server not found on PATH: installing it with apt-get"; \
	sudo=; if [[ "$$(id -u)" -ne 0 ]]; then sudo=sudo; fi; \
	$$sudo apt-get update; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
	command -v redis-server >/dev/null || { echo "redis-server still not on PATH after apt-get install"; exit 1; }

## redis-rootfs: prepare deploy/redis for `docker compose build redis`.
redis-rootfs: install-redis
	scripts/redis-rootfs.sh deploy/redis

## compose-bin: the static binaries of ./examples/service and
## ./examples/downstream for deploy/service and deploy/downstream (FROM
## scratch), with the host's CA certificates for rediss:// URLs.
compose-bin:
	CGO_ENABLED=0 $(GO) build -trimpath -o deploy/service/service ./examples/service
	CGO_ENABLED=0 $(GO) build -trimpath -o deploy/downstream/downstream ./examples/downstream
	@ca=/etc/ssl/certs/ca-certificates.crt; \
	if [[ -r $$ca ]]; then cp $$ca deploy/service/ca-certificates.crt; \
	else : >deploy/service/ca-certificates.crt; echo "compose-bin: no $$ca; rediss:// needs REDIS_URL to a server whose CA you add"; fi

# COMPOSE is docker-compose (v1) when installed, else `docker compose` (v2).
COMPOSE ?= $(shell if command -v docker-compose >/dev/null 2>&1; then echo docker-compose; else echo docker compose; fi)

## compose-up: build the images and start docker-compose.yml's fleet:
## Redis, the downstream and three replicas of examples/service.
compose-up: compose-bin redis-rootfs
	$(COMPOSE) up -d --build
	@echo "fleet up: curl -s localhost:$${BREAKWATER_SERVICE_1_PORT:-8081}/status; curl -s -X POST localhost:$${BREAKWATER_DOWNSTREAM_PORT:-8090}/fail"

## compose-down: stop and remove the fleet of compose-up.
compose-down:
	$(COMPOSE) down --remove-orphans

## compose-check: bring the fleet up in a compose project of its own, fail
## the downstream, check through the replicas' /status that they tripped
## once and together, heal it, check that they recovered, tear it down.
compose-check: compose-bin redis-rootfs
	BREAKWATER_REQUIRE_DOCKER=$(BREAKWATER_REQUIRE_DOCKER) scripts/compose-check.sh
