# Sourced by scripts/demo and scripts/test: make .venv and install the project into it.
# Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
extras="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.installed-$extras"
want="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing mgs-monitor[$extras] into $venv (first run takes a few minutes)" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$root[$extras]"
    echo "$want" > "$stamp"
fi
