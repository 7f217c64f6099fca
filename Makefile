# loc3r: `make demo` runs the main job on the embedded default, `make test` runs every test.
# Both set the machine up first (tools/bootstrap is idempotent and fast when done).

CARGO ?= cargo
DEMO_DIR ?= build/demo
SEED ?= 1

.PHONY: bootstrap build test lint unit demo clean-demo

bootstrap:
	@tools/bootstrap

build: bootstrap
	$(CARGO) build --release --workspace --bins

# Everything CI checks: lints (warnings are errors), then the whole test suite.
test: bootstrap lint unit

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# The main job on the embedded tiny default: random tiny checkpoint -> validation.
demo: build clean-demo
	@echo "== 1/2 make-tiny: a complete random checkpoint (tiny config, seed $(SEED); weights are random, answers will be nonsense)"
	./target/release/loc3r-export make-tiny --out $(DEMO_DIR)/checkpoint --seed $(SEED) --shards 2
	@echo "== 2/2 check: validate every tensor the graphs need"
	./target/release/loc3r-export check --checkpoint $(DEMO_DIR)/checkpoint
	@echo "== demo done: outputs in $(DEMO_DIR)/"

clean-demo:
	@rm -rf $(DEMO_DIR)
