# switchd — see README.md. Every target works on a fresh clone with Go installed.
GO        ?= go
BIN       := bin
PKGS      := ./...
# Short fault/load runs are part of `make test`; the long ones have their own targets.
TESTFLAGS ?= -race -count=1 -timeout 15m
BENCHTIME ?= 1s
FUZZTIME  ?= 30s

.PHONY: build run test bench bench-e2e bench-route fuzz lint clean cluster cluster-stop chaos bench-cluster readme

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	BIN=$(BIN) ./scripts/run-demo.sh $(ARGS)

test:
	$(GO) vet $(PKGS)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) test $(TESTFLAGS) $(PKGS)

# Micro benchmarks (codec vs moov-io, FSM apply). Results: docs/BENCHMARKS.md.
bench:
	$(GO) test -run=NONE -bench=. -skip=FlushStall -benchmem -benchtime=$(BENCHTIME) -count=5 ./codec/ ./store/
	# Raft log stores (bolt vs WAL, fsync per append) and pebble's flush stall (~30 s).
	$(GO) test -run=NONE -bench=LogStoreAppend -benchtime=2000x ./cluster/
	$(GO) test -run=NONE -bench=FlushStall ./store/
	# Settlement file (1M transfers), MT940 (100k entries), reconciliation (100k, 1M rows per source).
	$(GO) test -run=NONE -bench='SettlementFile|MT940|Recon' -benchtime=1x ./settle/
	# Off-us forwarding (issue 13): off/on approvals/s and CPU a purchase, latency at 5,000/s, SAF drain of 10,000.
	$(GO) test -run=NONE -bench='Forward$$' -benchtime=10x ./forward/
	FORWARD_RATE=5000 $(GO) test -run=NONE -bench=ForwardOpenLoop -benchtime=15000x ./forward/
	$(GO) test -run=NONE -bench=SAFDrain -benchtime=1x ./forward/
	$(MAKE) bench-e2e

# End to end: switchd with an fsync'd raft log, driven by switchload on loopback.
bench-e2e: build
	./scripts/bench-e2e.sh

# Route change → first message on another node's lane that takes it, on a
# 3-node cluster under BENCH_ROUTE_RATE/s (default 5000). docs/BENCHMARKS.md.
bench-route:
	$(GO) test -run='^$$' -bench=RouteChange -benchtime=$(or $(BENCH_ROUTE_FLIPS),100)x -timeout=10m ./cmd/switchd/

# A local 3-node cluster in the background (scripts/cluster.sh; data and
# logs in data/cluster): lanes :8583-8585, ops :8080-8082, raft :7001-7003.
cluster: build
	./scripts/cluster.sh start

cluster-stop:
	./scripts/cluster.sh stop

# 1 node vs 3 nodes, failover after kill -9 of the leader, catch-up of a new
# node from a snapshot (docs/BENCHMARKS.md).
bench-cluster: build
	./scripts/cluster-bench.sh

# Long fault runs (package chaos): CHAOS_RUNS seeded runs of a 3-node cluster
# under load while nodes are killed, restarted and partitioned; 0 violations
# expected. A short run is part of `make test`. CHAOS_SEED=N repeats a seed.
CHAOS_RUNS     ?= 20
CHAOS_DURATION ?= 30s
CHAOS_SEED     ?= 0
CHAOS_NODES    ?= 3
chaos:
	$(GO) test -count=1 -timeout 6h -run 'TestChaosLong' -v ./chaos/ \
	  -chaos.runs=$(CHAOS_RUNS) -chaos.duration=$(CHAOS_DURATION) -chaos.seed=$(CHAOS_SEED) -chaos.nodes=$(CHAOS_NODES)

# Every command README.md shows, run in order on a copy of the checkout
# (scripts/readme.sh; ~4 min: two switchload runs of 30 s and one of 60 s).
# .ci/run runs it after make test, so the README cannot drift.
readme:
	./scripts/readme.sh

fuzz:
	$(GO) test -run=NONE -fuzz=FuzzUnpack -fuzztime=$(FUZZTIME) ./codec/
	$(GO) test -run=NONE -fuzz=FuzzReadFrame -fuzztime=$(FUZZTIME) ./codec/
	$(GO) test -run=NONE -fuzz=FuzzParseRequest -fuzztime=$(FUZZTIME) ./codec/
	$(GO) test -run=NONE -fuzz=FuzzParseBalances -fuzztime=$(FUZZTIME) ./codec/
	$(GO) test -run=NONE -fuzz=FuzzParseFile -fuzztime=$(FUZZTIME) ./settle/
	$(GO) test -run=NONE -fuzz=FuzzDecodeBatch -fuzztime=$(FUZZTIME) ./store/
	$(GO) test -run=NONE -fuzz=FuzzApply -fuzztime=$(FUZZTIME) ./store/
	$(GO) test -run=NONE -fuzz=FuzzMACVerify -fuzztime=$(FUZZTIME) ./switch/
	$(GO) test -run=NONE -fuzz=FuzzX919 -fuzztime=$(FUZZTIME) ./mac/
	$(GO) test -run=NONE -fuzz=FuzzPayment -fuzztime=$(FUZZTIME) ./sim/

lint:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

clean:
	rm -rf $(BIN) data
