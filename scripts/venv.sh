# Sourced by scripts/demo and scripts/test: make .venv and install the project into it, with
# the extras named in $1 ("" for the monitor's own dependencies alone, as the demo needs).
# Reinstalls only when pyproject.toml changed since the last install with these extras.
set -euo pipefail
extras="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.installed-${extras:-runtime}"
project="$root${extras:+[$extras]}"
want="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing mgs-monitor${extras:+[$extras]} into $venv (first run takes a minute or more)" >&2
    log="$venv/install.log"
    if ! { "$venv/bin/python" -m pip install --upgrade pip &&
           "$venv/bin/python" -m pip install -e "$project"; } > "$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "install failed; the whole log is in $log" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
