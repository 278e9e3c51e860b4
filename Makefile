# Thin wrapper over CMake: `make run` and `make test` are the only commands a newcomer needs.
#   make deps     install missing Debian packages (apt-get; sudo when not root)
#   make build    configure and build (build/; SANITIZE=1 -> build-asan/ with ASan+UBSan)
#   make run      deps + build, then the proxy on config/lbproxy.yaml with two demo backends
#   make test     deps + build, then every test (Criterion, via CTest)
#   make bench    benchmark every dispatch strategy against nginx and HAProxy (QUICK=1: short)
#   make install  build, then install (PREFIX=/usr/local, DESTDIR=): binary, /etc/lbproxy config
#                 (never replaced), systemd unit
#   make fuzz     libFuzzer targets (clang) in build-fuzz/, each run FUZZ_SECONDS (default 60)
#   make clean    remove build directories

SANITIZE ?= 0
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(SANITIZE),1)
BUILD_DIR ?= build-asan
CMAKE_FLAGS += -DLBPROXY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD_DIR ?= build
CMAKE_FLAGS += -DCMAKE_BUILD_TYPE=RelWithDebInfo
endif

# What building and testing need on Debian 12 / Ubuntu.
PACKAGES := build-essential cmake pkg-config libuv1-dev node-llhttp libyaml-dev \
            libcriterion-dev libcurl4-openssl-dev curl ca-certificates libjansson-dev

# What `make test` needs on top: promtool checks /metrics (Debian's prometheus package) and
# headless Chromium loads the status page.
TEST_PACKAGES := prometheus chromium

# What `make fuzz` needs on top: clang and its runtime (libFuzzer, ASan, UBSan).
FUZZ_PACKAGES := clang libclang-rt-dev
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

PREFIX ?= /usr/local

.PHONY: all deps test-deps build run test install bench fuzz clean format

all: build

# Packages this installs never leave a service running or enabled (nginx, haproxy and
# prometheus are here for tests and benches, and nginx's default site would take port 80): a
# policy-rc.d that forbids starting one guards the install, and the services are disabled after.
deps:
	@missing=""; \
	for p in $(PACKAGES) $(EXTRA_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null && \
	    $$SUDO chmod 755 /usr/sbin/policy-rc.d && guard=1; \
	  fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	  rc=$$?; [ -z "$$guard" ] || $$SUDO rm -f /usr/sbin/policy-rc.d; \
	  for p in $$missing; do case $$p in nginx*|haproxy|prometheus) s=$${p%-light}; \
	    $$SUDO systemctl disable --now $$s >/dev/null 2>&1; \
	    $$SUDO update-rc.d $$s disable >/dev/null 2>&1; \
	    echo "make deps: $$s installed for tests and benches only: its service is not started or enabled";; \
	  esac; done; \
	  exit $$rc; \
	fi

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)

build: $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The build's own output goes to a log: what `make run` prints is the demo's.
run: deps
	@mkdir -p $(BUILD_DIR)
	@echo "make run: building lbproxy (output in $(BUILD_DIR)/build.log)..."
	@$(MAKE) --no-print-directory build > $(BUILD_DIR)/build.log 2>&1 || \
	  { tail -n 40 $(BUILD_DIR)/build.log; echo "make run: the build failed (see above)"; exit 1; }
	@tests/support/run-demo.sh $(BUILD_DIR)

# Under the sanitizers, a report in a test process that Criterion already counted as passed
# (a leak found at exit) must still fail the run: every test's output is scanned.
test-deps:
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(TEST_PACKAGES)"

test: test-deps build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 1200 --output-log ctest.log
ifeq ($(SANITIZE),1)
	@if grep -nE "ERROR: (Address|Leak)Sanitizer|runtime error:" $(BUILD_DIR)/ctest.log; then \
	  echo "sanitizer reports above"; exit 1; fi
endif

# cmake --install does the work (packaging/CMakeLists.txt); DESTDIR goes in front of every path.
install: deps build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD_DIR) --prefix "$(PREFIX)"

bench:
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="wrk nginx-light haproxy gnuplot-nox valgrind"
	@$(MAKE) --no-print-directory build BUILD_DIR=build-release CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release -DLBPROXY_TESTS=OFF"
	@bench/run.sh build-release $(if $(QUICK),--quick,)

# libFuzzer targets (tests/fuzz/): their own clang build, each run for FUZZ_SECONDS from the
# seed corpus; any crash, sanitizer report or broken invariant fails, its input saved in
# build-fuzz/artifacts/. FUZZ_TARGETS="request config" runs only those.
fuzz:
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(FUZZ_PACKAGES)"
	@[ -f build-fuzz/CMakeCache.txt ] || cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang \
	  -DLBPROXY_FUZZ=ON -DLBPROXY_TESTS=OFF -DLBPROXY_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-fuzz --target fuzzers -j $(JOBS)
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-release build-fuzz
