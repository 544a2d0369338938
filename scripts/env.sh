# Shared settings for Kura's scripts (sourced, not run).
# DuckDB's bundled C++ build takes about 30 minutes on two cores, so every script builds into one
# target directory outside the clone and reuses it; `cargo run` and `cargo test` share one profile.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kura/target}"
KURA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KURA_ROOT
mkdir -p "$CARGO_TARGET_DIR"

# .cargo/config.toml compiles C and C++ through ccache (see the comment there).
if ! command -v ccache >/dev/null 2>&1; then
  echo "installing ccache (needed by .cargo/config.toml)" >&2
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -q ccache >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q ccache >/dev/null; }) ||
      { echo "cannot install ccache: install it with your package manager" >&2; exit 2; }
  else
    echo "ccache is required: install it with your package manager" >&2
    exit 2
  fi
fi
