# sidekey — `make run` and `make test` work on a fresh Debian 12 machine (as root or with sudo).
BUILD_DIR    ?= build/release
DEBUG_DIR    ?= build/debug
ASAN_DIR     ?= build/asan
GENERATOR    := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
JOBS         ?= $(shell nproc)
CTEST_ARGS   ?=

.PHONY: all deps build debug run test test-asan fuzz bench clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/build.ninja $(BUILD_DIR)/Makefile: | deps
	cmake -S . -B $(BUILD_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD_DIR)/$(if $(GENERATOR),build.ninja,Makefile)
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Starts sidekey with the embedded defaults: store in ./sidekey-data, the example policy.
run: build
	$(BUILD_DIR)/sidekey serve --config config/sidekey.yaml

# Builds (Release, with assertions kept by the tests themselves) and runs every test via CTest.
test: build
	scripts/install-test-deps.sh
	cd $(BUILD_DIR) && ctest --output-on-failure -j 2 $(CTEST_ARGS)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(ASAN_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=Sanitize
	cmake --build $(ASAN_DIR) -j $(JOBS)
	scripts/install-test-deps.sh
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j 2 $(CTEST_ARGS)

# The benchmark table of SPEC section 14 (installs wrk, nginx, haproxy when missing).
bench:
	bench/run

# libFuzzer targets, a bounded run each (clang; see tests/fuzz).
fuzz:
	scripts/fuzz.sh

clean:
	rm -rf build
