#!/usr/bin/env bash
# Create the Label Studio server's own virtual environment, .venv-ls/, beside .venv/.
#
# The server pins its own label-studio-sdk, numpy (< 2.3) and Django, so it lives apart from the
# project's environment; g3d talks to it over HTTP only. Idempotent: a complete environment (the
# marker file below, written last) is kept; a half-made one (a killed install) is made again.
# Prints the path of the `label-studio` command on its last line.
#
#   scripts/label-studio-venv.sh            # creates <repo>/.venv-ls if missing (~75 s, ~1 GB)
#   PY=python3.12 VENV_LS=/opt/ls scripts/label-studio-venv.sh
set -euo pipefail

LS_VERSION="1.23.2"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-python3}"
VENV_LS="${VENV_LS:-$REPO/.venv-ls}"
MARKER="$VENV_LS/.g3d-label-studio-$LS_VERSION"
BIN="$VENV_LS/bin/label-studio"

if [[ -f "$MARKER" && -x "$BIN" ]]; then
    echo "label-studio $LS_VERSION: already installed in $VENV_LS"
    echo "$BIN"
    exit 0
fi

if [[ -e "$VENV_LS" ]]; then
    echo "label-studio: $VENV_LS is incomplete or another version; recreating it" >&2
    rm -rf "$VENV_LS"
fi

echo "label-studio $LS_VERSION: creating $VENV_LS (about 75 s, 1 GB)" >&2
"$PY" -m venv "$VENV_LS"
"$VENV_LS/bin/python" -m pip install -q --upgrade pip
"$VENV_LS/bin/python" -m pip install -q "label-studio==$LS_VERSION"
# The package imports (without starting anything or touching ~/.local/share).
"$VENV_LS/bin/python" -c "import label_studio; assert label_studio.__version__ == '$LS_VERSION', label_studio.__version__"
touch "$MARKER"
echo "label-studio $LS_VERSION: installed in $VENV_LS"
echo "$BIN"
