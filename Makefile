# The two commands of the README. Both install what they need first (scripts/setup.sh, idempotent).
.PHONY: up test setup build build-js build-web typecheck lint unit bench bench-cli bench-starts bench-agents bench-e2b bench-db bench-gvisor bench-providers clean

PORT ?= 7070

## Start Paddock in the foreground on 127.0.0.1:$(PORT) with its embedded defaults (the compiled
## CLI in dist/, which setup builds when a source changed).
up: setup
	./bin/paddock up --port $(PORT) --agent-packages vendor/agents

## Typecheck, lint and run every test (under tsx, from the TypeScript sources).
test: setup typecheck lint unit

setup:
	@./scripts/setup.sh

## The native launcher, and the compiled CLI when a source changed since its last build.
build:
	@$(MAKE) -s -C native
	@node scripts/build.mjs --if-stale
	@node scripts/build-web.mjs --if-stale

## Compile the CLI to dist/ (bin/paddock runs it while no source is newer).
build-js:
	@node scripts/build.mjs

## Bundle the web UI (web/) into dist/web, which `paddock up` serves at /.
build-web:
	@node scripts/build-web.mjs

typecheck:
	npx tsc -p tsconfig.json --noEmit
	npx tsc -p web/tsconfig.json --noEmit

lint:
	npx eslint .

unit:
	node --import tsx --test --test-concurrency=1 --test-reporter=spec $$(find test -name node_modules -prune -o -name '*.test.ts' -print | sort)

bench: setup
	node --import tsx bench/run.ts

## Issue 10's measurements: cold start, pool claim, snapshots, services from a snapshot, fork, idle sessions.
bench-starts: setup
	node --import tsx bench/run.ts --runs 100
	node --import tsx bench/pool.ts --runs 100
	node --import tsx bench/snapshot.ts
	node --import tsx bench/services.ts --runs 10
	node --import tsx bench/fork.ts --runs 3
	node --import tsx bench/idle.ts

## Issue 11's measurement: time from `paddock run` to the agent's first model request, beside the same CLI exec'd directly.
bench-agents: setup
	node --import tsx bench/agent-overhead.ts --runs 20

## Issue 15's measurement: Sandbox.create() → first commands.run('true') through the e2b SDK, beside Paddock's own SDK.
bench-e2b: setup
	node --import tsx bench/e2b.ts --runs 20

## Issue 16's measurement: pgbench select-only and TPC-B-like, directly, through the Postgres credential gateway and through pgbouncer.
bench-db: setup
	node --import tsx bench/db.ts

## Issue 13's gVisor tier: session start and exec round trip under runsc, beside the namespaces tier in the same run.
bench-gvisor: setup
	node --import tsx bench/gvisor.ts --runs 20

## Issue 13's measurement: session start (create → first exec true) through the Provider interface, per provider (remote ones against local fakes), beside local.
bench-providers: setup
	node --import tsx bench/providers.ts --runs 20

## `paddock --help` start-up: compiled vs from source vs `node -e 0`.
bench-cli: setup
	node --import tsx bench/cli.ts

clean:
	rm -rf build dist
