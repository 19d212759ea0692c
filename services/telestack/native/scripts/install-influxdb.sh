#!/usr/bin/env bash
# Build a real InfluxDB 2.7.x server binary (`influxd`) from source, without Docker,
# and cache it outside the repo.
#
#   services/telestack/native/scripts/install-influxdb.sh            # prints progress on stderr,
#                                                 # the binary path as the last stdout line
#   INFLUXD=$(services/telestack/native/scripts/install-influxdb.sh) # typical use
#   services/telestack/native/scripts/install-influxdb.sh --verify   # also start it on 127.0.0.1 with a
#                                                 # throw-away data dir, run setup, write a
#                                                 # point and read it back with Flux
#
# Idempotent: when the cached binary exists and `influxd version` works it only
# prints its version (stderr) and path (stdout) and exits 0 (well under a second).
#
# What it does on a cold run (see INFLUXDB_BUILD_NOTES.md next to this file):
#   1. installs missing Debian build packages (gcc, libc6-dev, ca-certificates);
#      Go (>= 1.23) and Rust/cargo (>= 1.72) must already be installed;
#   2. `go mod download`s github.com/influxdata/influxdb/v2@$INFLUXDB_VERSION into a
#      private module cache and copies it to a writable source dir;
#   3. builds influxdata's pkg-config wrapper (github.com/influxdata/pkg-config, the
#      version pinned in influxdb's go.mod);
#   4. copies the flux module to where that wrapper expects a writable copy
#      ($GOCACHE/pkgconfig/github.com/influxdata/flux@vX), relaxes libflux's
#      `#![deny(warnings)]` to `warn` (new rustc lints would fail the build), and builds
#      libflux with cargo (--locked, overriding flux's rust-toolchain.toml pin of 1.72
#      with an installed toolchain through RUSTUP_TOOLCHAIN);
#   5. `go build`s ./cmd/influxd with CGO and the wrapper as PKG_CONFIG, with the
#      release build tags minus `assets` (no UI download; the HTTP API is complete)
#      and minus `static_build` (no musl target needed).
#
# Environment knobs:
#   TELESTACK_CACHE           cache root (default: $HOME/.cache/telestack)
#   INFLUXDB_VERSION          influxdb module tag (default: v2.7.12, the newest 2.7.x)
#   INFLUXDB_RUST_TOOLCHAIN   rustup toolchain used for libflux (default: stable if installed)
#   INFLUXDB_FORCE_REBUILD=1  rebuild influxd even if the cached binary works
#   INFLUXDB_VERIFY_PORT      port for --verify (default: random in 20000-39999)
set -euo pipefail

VERIFY=0
for arg in "$@"; do
  case "$arg" in
    --verify) VERIFY=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

INFLUXDB_VERSION="${INFLUXDB_VERSION:-v2.7.12}"
CACHE_ROOT="${TELESTACK_CACHE:-$HOME/.cache/telestack}"
C="$CACHE_ROOT/influxdb"
VDIR="$C/$INFLUXDB_VERSION"
BIN="$VDIR/bin/influxd"

log() { printf '[install-influxdb] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# verify: run the binary for real (setup, line-protocol write, Flux query) on loopback.
verify() {
  command -v curl >/dev/null 2>&1 || die "--verify needs curl"
  local port="${INFLUXDB_VERIFY_PORT:-$((20000 + RANDOM % 20000))}"
  local url="http://127.0.0.1:$port" tok="telestack-verify-token" d pid out
  d="$(mktemp -d "${TMPDIR:-/tmp}/influxd-verify.XXXXXX")"
  "$BIN" --bolt-path "$d/influxd.bolt" --sqlite-path "$d/influxd.sqlite" \
    --engine-path "$d/engine" --http-bind-address "127.0.0.1:$port" \
    --reporting-disabled --log-level warn >"$d/influxd.log" 2>&1 &
  pid=$!
  # shellcheck disable=SC2064
  trap "kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf '$d'" EXIT
  for _ in $(seq 1 100); do
    curl -sf "$url/health" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$d/influxd.log" >&2; die "influxd exited during startup"; }
    sleep 0.2
  done
  curl -sf "$url/health" >/dev/null || die "influxd did not become healthy on $url"
  curl -sf -X POST "$url/api/v2/setup" -H 'Content-Type: application/json' \
    -d "{\"username\":\"verify\",\"password\":\"verify-password\",\"org\":\"verify\",\"bucket\":\"b\",\"token\":\"$tok\"}" \
    >/dev/null || die "POST /api/v2/setup failed"
  curl -sf -X POST "$url/api/v2/write?org=verify&bucket=b&precision=s" \
    -H "Authorization: Token $tok" --data-binary "verify,host=h1 value=42.5 $(date +%s)" \
    || die "POST /api/v2/write failed"
  out="$(curl -sf -X POST "$url/api/v2/query?org=verify" -H "Authorization: Token $tok" \
    -H 'Content-Type: application/vnd.flux' -H 'Accept: application/csv' \
    --data 'from(bucket:"b") |> range(start:-1h) |> map(fn: (r) => ({r with _value: r._value * 2.0}))')" \
    || die "POST /api/v2/query (Flux) failed"
  grep -q ',85,value,verify,h1' <<<"$out" || { printf '%s\n' "$out" >&2; die "Flux query returned unexpected data"; }
  log "verify OK on $url: setup, write and Flux query (42.5*2 = 85) work"
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  rm -rf "$d"; trap - EXIT
}

finish() {
  ((VERIFY)) && verify
  echo "$BIN"
  exit 0
}

# ---------------------------------------------------------------- fast path
if [[ "${INFLUXDB_FORCE_REBUILD:-0}" != 1 && -x "$BIN" ]]; then
  if ver="$("$BIN" version 2>/dev/null)"; then
    log "cached: $ver"
    finish
  fi
  log "cached binary at $BIN does not run; rebuilding"
fi

mkdir -p "$C/logs" "$VDIR/bin"
# One build at a time per cache (a concurrent second run waits, then hits the fast path).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$C/.lock"
  if ! flock -n 9; then
    log "another install is running (lock $C/.lock); waiting for it..."
    flock 9
  fi
  if [[ "${INFLUXDB_FORCE_REBUILD:-0}" != 1 && -x "$BIN" ]] && ver="$("$BIN" version 2>/dev/null)"; then
    log "cached: $ver"
    finish
  fi
fi

START=$(date +%s)
elapsed() { echo "$(( $(date +%s) - START ))s"; }

# run_logged NAME CMD... : run CMD with output to $C/logs/NAME.log; show its tail on failure.
run_logged() {
  local name="$1"; shift
  local logf="$C/logs/$name.log"
  if ! "$@" >"$logf" 2>&1; then
    log "step '$name' failed; last lines of $logf:"
    tail -n 60 "$logf" >&2 || true
    exit 1
  fi
}

# ---------------------------------------------------------------- system packages
need_pkgs=()
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
[[ -e /usr/include/stdio.h ]] || need_pkgs+=(libc6-dev)
[[ -e /etc/ssl/certs/ca-certificates.crt ]] || need_pkgs+=(ca-certificates)
if ((${#need_pkgs[@]})); then
  command -v apt-get >/dev/null 2>&1 || die "missing ${need_pkgs[*]} and no apt-get to install them"
  log "installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  run_logged apt $SUDO sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${need_pkgs[*]}"
fi

# ---------------------------------------------------------------- toolchains
for d in /usr/local/go/bin "$HOME/go/bin" "$HOME/.cargo/bin"; do
  [[ -d "$d" && ":$PATH:" != *":$d:"* ]] && PATH="$PATH:$d"
done
export PATH
command -v go >/dev/null 2>&1 || die "Go (>= 1.23) is required but 'go' is not on PATH"
command -v cargo >/dev/null 2>&1 || die "Rust/cargo (>= 1.72) is required but 'cargo' is not on PATH"

# flux pins `channel = "1.72"` in rust-toolchain.toml; rustup would try to download it.
# Use an installed toolchain instead.
if command -v rustup >/dev/null 2>&1; then
  if [[ -z "${INFLUXDB_RUST_TOOLCHAIN:-}" ]]; then
    toolchains="$(rustup toolchain list 2>/dev/null | awk '{print $1}')"
    if grep -q '^stable' <<<"$toolchains"; then
      INFLUXDB_RUST_TOOLCHAIN=stable
    else
      INFLUXDB_RUST_TOOLCHAIN="$(grep -v '^nightly' <<<"$toolchains" | head -n1)"
      [[ -n "$INFLUXDB_RUST_TOOLCHAIN" ]] || INFLUXDB_RUST_TOOLCHAIN="$(head -n1 <<<"$toolchains")"
    fi
  fi
  [[ -n "$INFLUXDB_RUST_TOOLCHAIN" ]] || die "rustup has no toolchain installed"
  export RUSTUP_TOOLCHAIN="$INFLUXDB_RUST_TOOLCHAIN"
fi
log "toolchains: $(go version | awk '{print $3}'), $(cargo --version) ${RUSTUP_TOOLCHAIN:+(RUSTUP_TOOLCHAIN=$RUSTUP_TOOLCHAIN)}"

# Everything Go writes goes under the cache dir (build cache, module cache, wrapper's libflux copy).
export GOCACHE="$C/go-build"
export GOMODCACHE="$C/go-mod"
export GOFLAGS="-buildvcs=false"
export GO111MODULE=on
export CGO_ENABLED=1
unset GOOS GOARCH CARGO_TARGET_DIR RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS PKG_CONFIG_PATH || true
mkdir -p "$GOCACHE" "$GOMODCACHE"

case "$(go env GOARCH)" in
  amd64) CARGO_TRIPLE=x86_64-unknown-linux-gnu ;;
  arm64) CARGO_TRIPLE=aarch64-unknown-linux-gnu ;;
  *) die "unsupported GOARCH $(go env GOARCH) (this script handles linux amd64/arm64)" ;;
esac
[[ "$(go env GOOS)" == linux ]] || die "only linux is supported"

# ---------------------------------------------------------------- influxdb sources
SRC="$VDIR/src"
if [[ ! -f "$SRC/.telestack-ready" ]]; then
  log "downloading github.com/influxdata/influxdb/v2@$INFLUXDB_VERSION (Go module proxy)..."
  dl_json="$(cd "$C" && go mod download -json "github.com/influxdata/influxdb/v2@$INFLUXDB_VERSION")" \
    || die "go mod download of influxdb $INFLUXDB_VERSION failed"
  moddir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$dl_json")"
  [[ -d "$moddir" ]] || die "could not locate downloaded influxdb module (got: $moddir)"
  rm -rf "$SRC" "$SRC.tmp"
  cp -r "$moddir" "$SRC.tmp"
  chmod -R u+w "$SRC.tmp"
  touch "$SRC.tmp/.telestack-ready"
  mv "$SRC.tmp" "$SRC"
fi
cd "$SRC"

log "downloading the flux and pkg-config modules... [$(elapsed)]"
run_logged go-mod-download go mod download github.com/influxdata/flux github.com/influxdata/pkg-config

FLUX_VERSION="$(go list -m -f '{{.Version}}' github.com/influxdata/flux)"
FLUX_MODDIR="$(go list -m -f '{{.Dir}}' github.com/influxdata/flux)"
[[ -n "$FLUX_VERSION" && -d "$FLUX_MODDIR/libflux" ]] || die "could not locate the flux module"
log "influxdb $INFLUXDB_VERSION uses flux $FLUX_VERSION"

# ---------------------------------------------------------------- pkg-config wrapper
TOOLS="$VDIR/tools"
PKGCONF="$TOOLS/pkg-config"
if [[ ! -x "$PKGCONF" ]]; then
  log "building influxdata pkg-config wrapper ($(go list -m -f '{{.Version}}' github.com/influxdata/pkg-config))..."
  mkdir -p "$TOOLS"
  run_logged pkg-config go build -o "$PKGCONF.tmp" github.com/influxdata/pkg-config
  mv "$PKGCONF.tmp" "$PKGCONF"
fi

# ---------------------------------------------------------------- libflux (Rust)
# The wrapper builds libflux itself with `cargo build --release --target <triple>` inside
# $GOCACHE/pkgconfig/<module>@<version> when the module dir is read-only (it is, in the
# module cache). We prepare that copy ourselves (patched) and pre-build it, so the
# wrapper's own cargo call during `go build` is a no-op.
FLUX_SRC="$GOCACHE/pkgconfig/github.com/influxdata/flux@$FLUX_VERSION"
if [[ ! -f "$FLUX_SRC/.telestack-ready" ]]; then
  log "preparing writable flux source copy at $FLUX_SRC"
  rm -rf "$FLUX_SRC" "$FLUX_SRC.tmp"
  mkdir -p "$(dirname "$FLUX_SRC")"
  cp -r "$FLUX_MODDIR" "$FLUX_SRC.tmp"
  chmod -R u+w "$FLUX_SRC.tmp"
  # Newer rustc adds lints (dead_code, mismatched_lifetime_syntaxes, ...) that the
  # `strict` feature's deny(warnings) turns into errors. RUSTFLAGS=--cap-lints would not
  # reach flux-core's host build (it is also a build-dependency), so relax the attribute.
  for f in "$FLUX_SRC.tmp/libflux/flux-core/src/lib.rs" "$FLUX_SRC.tmp/libflux/flux/src/lib.rs"; do
    sed -i 's/deny(warnings, missing_docs)/warn(warnings, missing_docs)/' "$f"
  done
  touch "$FLUX_SRC.tmp/.telestack-ready"
  mv "$FLUX_SRC.tmp" "$FLUX_SRC"
fi
if [[ ! -f "$FLUX_SRC/libflux/target/$CARGO_TRIPLE/release/libflux.a" ]]; then
  log "building libflux $FLUX_VERSION with cargo (takes ~1-3 min cold)... [$(elapsed)]"
else
  log "checking libflux build (cargo, cached)... [$(elapsed)]"
fi
(cd "$FLUX_SRC/libflux" && run_logged cargo-libflux cargo build --release --locked --target "$CARGO_TRIPLE")
[[ -f "$FLUX_SRC/libflux/target/$CARGO_TRIPLE/release/libflux.a" ]] || die "libflux.a was not produced"

# ---------------------------------------------------------------- influxd (Go)
# Tags as in influxdb's scripts/ci/build.sh release build for linux, minus `assets`
# (would need the UI tarball) and `static_build` (would need the musl rust target).
TAGS="sqlite_foreign_keys,sqlite_json,noasm"
VERSION_STR="${INFLUXDB_VERSION#v}"
LDFLAGS="-s -w -X main.version=$VERSION_STR -X main.commit=go-module-$INFLUXDB_VERSION -X main.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "building influxd with go build (takes ~3-6 min cold on 2 cores)... [$(elapsed)]"
export PKG_CONFIG="$PKGCONF"
run_logged go-build-influxd go build -tags "$TAGS" -ldflags "$LDFLAGS" -o "$BIN.tmp" ./cmd/influxd
mv -f "$BIN.tmp" "$BIN"

ver="$("$BIN" version)" || die "built binary does not run: $BIN"
log "built $ver in $(elapsed)"
finish
