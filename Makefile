# shardproxy — build, test, bench, fuzz, lint, run.
#
# `make test` is what CI runs (.ci/run): it installs the PostgreSQL server
# binaries if they are missing; the tests then start and stop their own
# throw-away servers on free loopback ports (pool/pgtest) and never use a
# system cluster.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
GO           ?= go
BIN          := bin/shardproxy
TEST_TIMEOUT ?= 50m

# Fuzz targets as pkg:FuzzName, e.g. router:FuzzAnalyze proxy:FuzzMessageLoop.
FUZZ_TARGETS ?= router:FuzzParseQuery proxy:FuzzMessageLoop
FUZZTIME_SHORT ?= 10000x # per target in `make test`: a count, not a duration (Go 1.26 fuzz coordinator can fail a duration run with a bare "context deadline exceeded" at the deadline, go.dev/issue/75804)
FUZZTIME       ?= 60s   # per target in `make fuzz` (a duration; a bare "context deadline exceeded" at its end is that Go bug, not a finding)

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all deps build test fuzz-short fuzz bench lint run run-orders clean

all: build

# PostgreSQL server binaries for the test harness (and pgbench, psql), and
# runuser for scripts that start servers as the postgres user. Does nothing
# when both are present.
deps:
	@if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		echo "deps: installing postgresql"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	fi
	@if ! command -v runuser >/dev/null 2>&1; then \
		echo "deps: installing util-linux (runuser)"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q util-linux; \
	fi

build:
	$(GO) build -o $(BIN) ./cmd/shardproxy

test: deps
	$(GO) vet ./...
	$(GO) test ./... -count=1 -timeout $(TEST_TIMEOUT)
	@$(MAKE) --no-print-directory fuzz-short

# Brief fuzz runs: each target for FUZZTIME_SHORT (new crashers land in the
# package's testdata/fuzz and fail the run).
fuzz-short:
	@$(call run_fuzz,$(strip $(FUZZTIME_SHORT)))

fuzz:
	@$(call run_fuzz,$(strip $(FUZZTIME)))

define run_fuzz
for t in $(FUZZ_TARGETS); do \
	pkg="$${t%%:*}"; name="$${t##*:}"; \
	echo "fuzz: ./$$pkg $$name for $(1)"; \
	$(GO) test "./$$pkg" -run '^$$' -fuzz "^$$name\$$" -fuzztime $(1); \
done
endef

bench: deps
	$(GO) test -run '^$$' -bench . ./...
	@if [ -f testdata/bench/pgbench.sh ]; then \
		bash testdata/bench/pgbench.sh; \
	else \
		echo "bench: testdata/bench/pgbench.sh not present, skipping pgbench"; \
	fi
	@$(MAKE) --no-print-directory build
	bash testdata/orders/bench.sh

lint:
	@files="$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -print0 | xargs -0 gofmt -l; gofmt -l testdata/bench/relay)"; \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi
	$(GO) vet ./... ./testdata/bench/relay

# Starts local shards, loads testdata/demo, serves in the foreground.
run: deps build
	./$(BIN) dev $(ARGS)

# The reference order service (issue 5): 3 local shards, the proxy with
# testdata/orders, the schema and seed data, the HTTP API on :8080.
run-orders: deps build
	./$(BIN) orders dev $(ARGS)

clean:
	rm -rf bin
