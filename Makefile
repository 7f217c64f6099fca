# loc3r: `make demo` runs the main job on the trained default, `make test` runs every test.
# Both set the machine up first (tools/bootstrap is idempotent and fast when done).

CARGO ?= cargo
DEMO_DIR ?= build/demo
SEED ?= 1

.PHONY: bootstrap build test lint unit python python-test demo train-demo eval-demo clean-demo bench

bootstrap:
	@tools/bootstrap

build: bootstrap
	$(CARGO) build --release --workspace --bins

# Everything CI checks: lints (warnings are errors), then the whole test suite.
test: bootstrap lint unit python-test

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# The Python module `loc3r` (python/): an abi3 wheel for CPython >= 3.9 on this kind of machine.
PYTHON_PROFILE ?= release
PYTHON_WHEELS ?= build/python
MATURIN_BUILD = .venv/bin/maturin build --manifest-path python/Cargo.toml -i .venv/bin/python

python: bootstrap
	$(MATURIN_BUILD) --profile $(PYTHON_PROFILE) --out $(PYTHON_WHEELS)

# The Python module's pytest suite (python/tests) on the extension cargo builds with the rest of
# the workspace (the same dependency builds as `cargo test --workspace`, so only pyo3 and the
# bindings compile here; a maturin build would recompile much of the tree with its own flags),
# laid out as the wheel lays it out, in a directory of its own rather than in .venv. The
# fixtures make their tiny bundle with the loc3r-export of the same build.
PYTHON_TEST_DIR = build/python-test
python-test: bootstrap
	$(CARGO) build --workspace --all-targets --quiet
	rm -rf $(PYTHON_TEST_DIR)
	mkdir -p $(PYTHON_TEST_DIR)/site/loc3r
	cp python/loc3r/*.py $(PYTHON_TEST_DIR)/site/loc3r/
	cp target/debug/libloc3r_python.so $(PYTHON_TEST_DIR)/site/loc3r/_native.abi3.so
	LOC3R_EXPORT=$(CURDIR)/target/debug/loc3r-export PYTHONPATH=$(CURDIR)/$(PYTHON_TEST_DIR)/site .venv/bin/python -m pytest -q -p no:cacheprovider python/tests

# The main job on the trained default (models/demo/checkpoint, a demo-size Loc3R model trained by
# our own training path on synthetic rooms; `make train-demo` reproduces it): export -> a held-out
# synthetic room it has never seen -> every question's predicted pose and answer next to the truth.
DEMO_MODEL ?= models/demo/checkpoint
HELDOUT_SEED ?= 1000

demo: build clean-demo
	@tools/check-demo-model $(DEMO_MODEL)
	@echo "== 1/4 check: validate every tensor of the trained demo checkpoint ($(DEMO_MODEL))"
	./target/release/loc3r-export check --checkpoint $(DEMO_MODEL)
	@echo "== 2/4 export: ONNX graphs + manifest.json + tokenizer.json -> $(DEMO_DIR)/bundle"
	./target/release/loc3r-export export --checkpoint $(DEMO_MODEL) --out $(DEMO_DIR)/bundle
	@echo "== 3/4 loc3r-synth: a held-out room (seed $(HELDOUT_SEED), never used in training), 64 frames"
	./target/release/loc3r-synth --rooms 1 --seed $(HELDOUT_SEED) --frames 64 --out $(DEMO_DIR)/rooms --force
	cp $(DEMO_DIR)/rooms/scenes/*/video.mp4 $(DEMO_DIR)/room.mp4
	@echo "== 4/4 observe the room's video once (16 frames), then ask every question: pose and answer vs ground truth"
	./target/release/loc3r-eval synth --bundle $(DEMO_DIR)/bundle --questions $(DEMO_DIR)/rooms/questions.jsonl --no-baselines --show 100
	@echo "== demo done; the same bundle serves over HTTP: ./target/release/loc3r-serve serve --bundle $(DEMO_DIR)/bundle"

# Trains the demo model from a seed (~1 h on 2 CPU cores; resumable) and installs it in $(DEMO_MODEL).
train-demo: build
	SEED=$(SEED) INSTALL=$(DEMO_MODEL) tools/train-demo

# The held-out evaluation of the demo model: 25 unseen rooms (300 questions), SQA3D metrics and answer
# exact match against three baselines (blank video, mean training pose, random pose).
eval-demo: build
	@tools/check-demo-model $(DEMO_MODEL)
	./target/release/loc3r-export export --checkpoint $(DEMO_MODEL) --out $(DEMO_DIR)/bundle
	./target/release/loc3r-synth --rooms 25 --seed $(HELDOUT_SEED) --frames 64 --out $(DEMO_DIR)/heldout --force
	./target/release/loc3r-eval synth --bundle $(DEMO_DIR)/bundle --questions $(DEMO_DIR)/heldout/questions.jsonl \
	  --train-questions models/demo/train-questions.jsonl --out $(DEMO_DIR)/heldout-results.jsonl

# CPU benchmark on the small config (per-stage times at 8 and 32 frames, and one training step against
# PyTorch: tools/bench-train); not part of `make test`.
bench: bootstrap
	tools/bench
	tools/bench-train

clean-demo:
	@rm -rf $(DEMO_DIR)
