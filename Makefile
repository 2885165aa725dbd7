# SummaryWomble: an Azure Functions app run by a Rust custom handler.
#
#   make run              start the app locally with Azurite (func start when Core Tools is
#                         installed, else the handler in standalone mode on port 7071)
#   make test             formatting, clippy and cargo deny (scripts/guard-rails.sh), then unit,
#                         contract and black-box tests against a real Azurite (the
#                         dashboard's in headless Chromium, installed when missing), and a short
#                         schema-driven fuzzing run (schemathesis, from openapi.yaml)
#   make fuzz-api N=300   a longer fuzzing run
#   make loadtest N=5000 C=50   the big load tests (1,000 tickets from 50 clients, then N job
#                         starts from C concurrent clients: throughput, latency)
#   make handler          release build of the handler, copied to ./handler
#   make package          Linux x86-64 handler that starts on glibc 2.17 or newer (static musl
#                         when installed, else cargo-zigbuild), zipped as Core Tools publishes it:
#                         target/package/summary-womble.zip
#   make unpack           make package, unpacked into target/package/publish (what azd deploys)
#   make bench            the service against the storage limit (table + target/bench/results.json)
#   make deploy APP=name  make package, then publish exactly that with Core Tools
#   make smoke URL=https://<app>.azurewebsites.net KEY=<key>   one job against a deployment, to its end

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
PORT ?= 7071
AZURITE_RUN_PORT ?= 10000
AZURITE_QUEUE_RUN_PORT ?= 10001

.PHONY: help run test fuzz-api loadtest handler package unpack bench deploy clean

help:
	@sed -n 's/^#   //p' Makefile

node_modules/.bin/azurite-blob: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

test: node_modules/.bin/azurite-blob
	scripts/guard-rails.sh
	scripts/browser.sh
	$(CARGO) build --locked --tests --bins
	scripts/with-azurite.sh .test-state scripts/test.sh

fuzz-api: node_modules/.bin/azurite-blob
	$(CARGO) build --locked --bins
	FUZZ_EXAMPLES=$(or $(N),300) scripts/with-azurite.sh .fuzz-state scripts/fuzz-api.sh $(or $(N),300)

run: node_modules/.bin/azurite-blob
	@if command -v func >/dev/null 2>&1; then \
	  $(CARGO) build --locked && cp target/debug/handler ./handler && \
	  AZURITE_BLOB_PORT=$(AZURITE_RUN_PORT) AZURITE_QUEUE_PORT=$(AZURITE_QUEUE_RUN_PORT) \
	    scripts/with-azurite.sh .run-state func start --custom; \
	else \
	  echo "Azure Functions Core Tools (func) not found: running the handler standalone on port $(PORT)."; \
	  $(CARGO) build --locked && \
	  scripts/with-azurite.sh .run-state scripts/run-standalone.sh $(PORT); \
	fi

loadtest: node_modules/.bin/azurite-blob
	LOADTEST_N=$(or $(N),5000) LOADTEST_C=$(or $(C),50) scripts/with-azurite.sh .loadtest-state \
	  $(CARGO) test --locked --release --test integration load:: -- --ignored --nocapture

handler:
	$(CARGO) build --locked --release --bin handler
	cp target/release/handler ./handler

package:
	scripts/package.sh

# One release build: `cargo bench` builds the handler binary beside the benchmark (a separate
# `cargo build --release` would build the whole tree again, with other dependency features).
# The benchmark starts its own Azurite (in memory) and fake Reddit.
bench: node_modules/.bin/azurite-blob
	$(CARGO) bench --locked --bench service

# The package unpacked: Core Tools and azd zip the folder they are given, so they are given this
# one (unzip keeps the handler's execute bit), and what is published is exactly what
# `make package` checked.
unpack: package
	rm -rf target/package/publish
	unzip -q target/package/summary-womble.zip -d target/package/publish

deploy:
	@test -n "$(APP)" || { echo "usage: make deploy APP=<function-app-name>"; exit 2; }
	@command -v func >/dev/null 2>&1 || { echo "Azure Functions Core Tools (func) is required to deploy"; exit 2; }
	$(MAKE) unpack
	cd target/package/publish && func azure functionapp publish $(APP) --custom

# The design document's manual test against any deployment: `handler smoke` (src/cli/smoke.rs).
# The key travels in the environment, not in the handler's arguments, where `ps` would show it.
.PHONY: smoke
smoke:
	@test -n "$(URL)" || { echo "usage: make smoke URL=https://<app>.azurewebsites.net KEY=<SummaryWomble function key> [TIMEOUT=5m]"; exit 2; }
	@$(CARGO) build --locked --quiet --bin handler
	@WOMBLE_URL='$(URL)' WOMBLE_KEY='$(KEY)' target/debug/handler smoke $(if $(TIMEOUT),--timeout '$(TIMEOUT)')

clean:
	-scripts/azurite.sh stop .test-state
	-scripts/azurite.sh stop .run-state
	rm -rf .test-state .run-state handler
