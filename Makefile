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

# The main job on the embedded tiny default: random tiny checkpoint -> validation -> ONNX bundle -> inspection.
demo: build clean-demo
	@echo "== 1/4 make-tiny: a complete random checkpoint (tiny config, seed $(SEED)); weights are random, so outputs carry no meaning"
	./target/release/loc3r-export make-tiny --out $(DEMO_DIR)/checkpoint --seed $(SEED) --shards 2
	@echo "== 2/4 check: validate every tensor the graphs need"
	./target/release/loc3r-export check --checkpoint $(DEMO_DIR)/checkpoint
	@echo "== 3/4 export: ONNX graphs + manifest.json + tokenizer.json"
	./target/release/loc3r-export export --checkpoint $(DEMO_DIR)/checkpoint --out $(DEMO_DIR)/bundle
	@echo "== 4/4 inspect: graph I/O, sha256 of every file, each graph loaded in ONNX Runtime"
	./target/release/loc3r-export inspect $(DEMO_DIR)/bundle
	@echo "== demo done: checkpoint and bundle in $(DEMO_DIR)/"

clean-demo:
	@rm -rf $(DEMO_DIR)
