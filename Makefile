# The two commands of the README. Both install what they need first (scripts/setup.sh, idempotent).
.PHONY: up test setup build typecheck lint unit bench clean

PORT ?= 7070

## Start Paddock in the foreground on 127.0.0.1:$(PORT) with its embedded defaults.
up: setup
	./bin/paddock up --port $(PORT)

## Typecheck, lint and run every test.
test: setup typecheck lint unit

setup:
	@./scripts/setup.sh

build:
	@$(MAKE) -s -C native

typecheck:
	npx tsc -p tsconfig.json --noEmit

lint:
	npx eslint .

unit:
	node --import tsx --test --test-concurrency=1 --test-reporter=spec $$(find test -name '*.test.ts' | sort)

bench: setup
	node --import tsx bench/run.ts

clean:
	rm -rf build
