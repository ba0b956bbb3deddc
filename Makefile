# Makefile for smartsync: the appserver and smartclient programs.
#
#   make build   binaries in bin/
#   make build-windows  bin/smartclient.exe (console) and bin/smartclientw.exe (for shortcuts)
#   make test    gofmt check, go vet (also for macOS and Windows), race-enabled tests
#   make demo    a real appserver and smartclient syncing on 127.0.0.1
#   make fuzz    every fuzz target, FUZZTIME each (default 10s)
#   make test-windows every package under Wine (.ci/run runs it after make test)
#   make bench        ours against rsync on the same data (scripts/bench; BENCHMARKS.md)
#   make bench-small  the same on smaller trees, in a few minutes
#   make load    one appserver under issue 22's load goals (scripts/load; BENCHMARKS.md),
#                e.g. make load LOAD_ARGS='-clients 100 -idle 1000 -max-transfers 8'
#   make clean   remove bin/ and the test cache
#
# GO may point at another toolchain: make GO=/usr/local/go/bin/go test

GO ?= go
# gofmt from the same toolchain as $(GO), so that formatting rules match.
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt

.PHONY: all build build-windows test fmt-check vet vet-cross demo fuzz clean bench bench-small load test-windows

all: build

# -buildvcs=auto stamps the commit into the binaries for --version, even
# where GOFLAGS turns it off (it does nothing outside a git checkout).
# Neither program uses cgo: built without it they are static, run on any
# Linux, and their resident program text is 1.5-2 MiB smaller (BENCHMARKS.md,
# "Where the memory goes"), as the Windows and macOS builds are anyway.
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -o bin/appserver ./appserver/cmd/appserver
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -o bin/smartclient ./smartclient/cmd/smartclient

# The Windows smartclient twice, as python.exe and pythonw.exe: the console
# build for terminals, scripts and the scheduler, and the windowsgui build for
# desktop shortcuts, which opens no console and shows a progress window
# (see smartclient/internal/desktop).
build-windows:
	GOOS=windows GOARCH=amd64 $(GO) build -buildvcs=auto -o bin/smartclient.exe ./smartclient/cmd/smartclient
	GOOS=windows GOARCH=amd64 $(GO) build -buildvcs=auto -ldflags=-H=windowsgui -o bin/smartclientw.exe ./smartclient/cmd/smartclient

test: fmt-check vet vet-cross
	$(GO) test -race -count=1 -timeout 30m ./...

# gofmt -l exits 0 even when it lists files, so fail on any output.
fmt-check:
	@out="$$($(GOFMT) -l .)" || exit 1; \
	if [ -n "$$out" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; \
		echo "$$out"; \
		exit 1; \
	fi

vet:
	$(GO) vet ./...

# macOS code cannot run here: it is at least vetted and built, test binaries
# included (go vet compiles them), for both architectures; Windows too, whose
# tests run under Wine in make test-windows.
vet-cross:
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=darwin GOARCH=amd64 $(GO) build ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

# Every package built for Windows, vetted, and tested under Wine (installs
# wine64 and the mingw binutils when missing; see scripts/ci-windows).
test-windows:
	GO="$(GO)" bash scripts/ci-windows

demo:
	bash scripts/demo.sh

fuzz:
	GO="$(GO)" bash scripts/fuzz.sh

bench:
	GO="$(GO)" $(GO) run ./scripts/bench

bench-small:
	GO="$(GO)" $(GO) run ./scripts/bench -small

# The load test: a stampede of clients, idle 'run' sessions, descriptors
# run out, and the self-update revert, against the goals of issue 22. It
# builds bin/ itself and takes about 10 minutes at full size; not part of
# make test. Flags in LOAD_ARGS (go run ./scripts/load -h lists them).
LOAD_ARGS ?=
load:
	GO="$(GO)" $(GO) run ./scripts/load $(LOAD_ARGS)

clean:
	rm -rf bin
	$(GO) clean -testcache
