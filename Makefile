# pgha — make demo · make test · make bench · make lint
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
BIN     := bin/pgha
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
SCALE   ?= 70
# rounds of the backup benchmark: each runs pgha and every baseline once, in turn
BACKUP_ROUNDS ?= 3
SOAK    ?= 10
# faults of the fault campaign (bench -chaos): issue 14's acceptance runs 200
CHAOS   ?= 10

.PHONY: all setup image build test demo demo-down secrets bench lint fuzz fuzz-short clean

all: build

## setup: install what is missing (PostgreSQL, redis-server, etcd-server) with apt-get
setup:
	@scripts/setup

## image: build the local PostgreSQL 17 test image (debootstrap; skipped when present)
image:
	@scripts/build-image pgha-test/postgres:17

## build: compile bin/pgha
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pgha

## secrets: generate the demo's passwords (mode 0600, git-ignored) once
secrets:
	@mkdir -p .secrets && chmod 700 .secrets
	@for s in superuser replication api; do \
	  [ -s .secrets/$$s ] || (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > .secrets/$$s); \
	done

## demo: bring up the default cluster.hcl (3 local nodes + Redis) and show it
demo: setup build secrets
	$(BIN) apply -auto-approve
	@echo
	$(BIN) status
	@echo
	$(BIN) backup list

## demo-down: destroy the demo cluster (stops nodes, deletes ./data)
demo-down: build
	$(BIN) destroy -auto-approve

## test: unit, golden, integration and end-to-end tests (real PostgreSQL and Redis).
## The end-to-end package runs after the others, not beside them: `go test ./...` runs two
## packages at once, and e2e's first tests (the non-parallel, timing-bound Docker ones:
## TestDockerHAProxy, TestDockerSync) then shared two cores with providers/postgres and
## providers/docker's own containers and missed their bounds (CI at 417e0da, f58ec3e, 8cc1528).
test: setup image lint fuzz-short
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/e2e$$')
	$(GO) test -count=1 -timeout 60m ./e2e

## bench: time `pgha plan` on a converged three-node cluster beside a shell baseline; HA
## operations and backups beside the scripts they replace; kill -9 of the primary under
## `pgha watch` (both runtimes) beside Patroni and pg_auto_failover at their defaults (installed
## from Debian's packages by the bench), 5 runs each; $(SOAK) minutes of pgbench at full CPU
## under `pgha watch`, reporting any false failover; the health checks of `pgha watch`'s health
## ports under 8 keep-alive clients beside Patroni's REST API; pgbench with synchronous
## replication beside asynchronous (both runtimes); the synchronous kill -9 acceptance on Docker
## with 20 rounds (make test runs 5 there, 20 locally); a fault campaign of $(CHAOS) seeded random
## faults under a writer and a 50 ms probe (lost writes, two primaries, time to converge), then
## again with self-fencing agents and the authority in etcd (their faults added)
bench: setup image build
	$(GO) test -run '^$$' -bench . -benchtime 30x ./plan/
	$(GO) run ./bench -pgha $(BIN)
	$(GO) run ./bench -pgha $(BIN) -runtime docker -image pgha-test/postgres:17
	$(GO) run ./bench -pgha $(BIN) -ha -scale $(SCALE)
	$(GO) run ./bench -pgha $(BIN) -ha -scale $(SCALE) -runtime docker -image pgha-test/postgres:17
	$(GO) run ./bench -pgha $(BIN) -backup -scale $(SCALE) -rounds $(BACKUP_ROUNDS)
	$(GO) run ./bench -pgha $(BIN) -backup -scale $(SCALE) -rounds $(BACKUP_ROUNDS) -runtime docker -image pgha-test/postgres:17
	$(GO) run ./bench -pgha $(BIN) -failover -runs 5 -image pgha-test/postgres:17
	$(GO) run ./bench -pgha $(BIN) -sync
	$(GO) run ./bench -pgha $(BIN) -sync -runtime docker -image pgha-test/postgres:17
	PGHA_SYNC_ROUNDS=20 $(GO) test -count=1 -timeout 30m -run 'TestDockerSync$$' ./e2e
	$(GO) run ./bench -pgha $(BIN) -soak $(SOAK)
	$(GO) run ./bench -pgha $(BIN) -health
	$(GO) run ./bench -pgha $(BIN) -archive
	$(GO) run ./bench -pgha $(BIN) -chaos $(CHAOS)
	$(GO) run ./bench -pgha $(BIN) -chaos $(CHAOS) -agents -authority etcd

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz-short: every fuzz target for $(FUZZTIME) each (make test runs it): the HCL decoder, the
## catalog address splitter (against net.SplitHostPort), the saved-plan reader, the restore's tar
## extraction, the conninfo / pg_hba / passfile renderers, the Markdown plan (pull-request
## comments).
## Go fuzzes one target per invocation, hence the loop; a short minimisation keeps each run
## to its time (the default minimises a new input for up to a minute). Go's fuzz engine sometimes
## ends a run with "context deadline exceeded" and no failing input when its time is up in the
## middle of a minimisation (seen once on FuzzMarkdown): that run is made once more, while any run
## that writes a failing input fails at once.
FUZZTIME ?= 5s
FUZZ_TARGETS := ./config/clusterfile/:FuzzParse ./config/:FuzzSplitAddress ./plan/:FuzzDecodePlan \
	./backup/:FuzzExtract ./internal/pgconf/:FuzzConninfo ./internal/pgconf/:FuzzHBA \
	./internal/pgconf/:FuzzPassfile ./views/:FuzzMarkdown
fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; \
	  printf 'fuzz %-17s %-24s ' "$$fn" "$$pkg"; \
	  run() { $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x $$pkg 2>&1; }; \
	  out=$$(run) || { \
	    if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
	      printf '(the fuzz engine hit its own deadline with no failing input: once more) '; out=$$(run); \
	    else false; fi; } || { echo FAIL; echo "$$out"; exit 1; }; \
	  echo "$$out" | grep -o 'execs: [0-9]*' | tail -n 1; \
	done

## fuzz: every fuzz target for a minute each
fuzz:
	@$(MAKE) --no-print-directory fuzz-short FUZZTIME=60s

clean:
	rm -rf bin
