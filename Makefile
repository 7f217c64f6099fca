# loc3r: `make demo` runs the main job on the embedded default, `make test` runs every test.
# Both set the machine up first (tools/bootstrap is idempotent and fast when done).

CARGO ?= cargo
DEMO_DIR ?= build/demo
SEED ?= 1

.PHONY: bootstrap build test lint unit demo clean-demo bench

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

# The main job on the embedded tiny default: random tiny checkpoint -> validation -> ONNX bundle
# -> inspection -> a synthetic video -> pose + answers for two questions (the second reuses the video).
demo: build clean-demo
	@echo "== 1/6 make-tiny: a complete random checkpoint (tiny config, seed $(SEED)); weights are random, so answers are gibberish"
	./target/release/loc3r-export make-tiny --out $(DEMO_DIR)/checkpoint --seed $(SEED) --shards 2
	@echo "== 2/6 check: validate every tensor the graphs need"
	./target/release/loc3r-export check --checkpoint $(DEMO_DIR)/checkpoint
	@echo "== 3/6 export: ONNX graphs + manifest.json + tokenizer.json"
	./target/release/loc3r-export export --checkpoint $(DEMO_DIR)/checkpoint --out $(DEMO_DIR)/bundle
	@echo "== 4/6 inspect: graph I/O, sha256 of every file, each graph loaded in ONNX Runtime"
	./target/release/loc3r-export inspect $(DEMO_DIR)/bundle
	@echo "== 5/6 a synthetic 4 s test video (ffmpeg testsrc)"
	ffmpeg -loglevel error -y -f lavfi -i testsrc=size=320x240:rate=10 -frames:v 40 -pix_fmt yuv420p $(DEMO_DIR)/room.mp4
	@echo "== 6/6 run: observe the video once, then two questions (the second prefills only its own tokens)"
	./target/release/loc3r-serve run --bundle $(DEMO_DIR)/bundle --video $(DEMO_DIR)/room.mp4 --frames 16 --max-new-tokens 16 \
	  --question "Where is the chair relative to me?" --question "Which direction am I facing?"
	@echo "== demo done: checkpoint, bundle and video in $(DEMO_DIR)/"

# CPU benchmark on the small config (per-stage times at 8 and 32 frames, and one training step against
# PyTorch: tools/bench-train); not part of `make test`.
bench: bootstrap
	tools/bench
	tools/bench-train

clean-demo:
	@rm -rf $(DEMO_DIR)
