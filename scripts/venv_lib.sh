# Sourced by scripts/bootstrap.sh (and its tests): choosing the interpreter and keeping a venv usable.
# A venv counts as usable only when its python runs, is the chosen interpreter's version and imports pip;
# anything less (a `python -m venv` that failed half-way for want of python3.11-venv, a copied folder) is
# removed and made again rather than trusted.

# Debian's python3.11 first: the Triton Python-backend stub links the system libpython3.11.so.1.0.
pick_python() {
  if [ -n "${UFO_PYTHON:-}" ]; then echo "$UFO_PYTHON"; return; fi
  if [ -x /usr/bin/python3.11 ]; then echo /usr/bin/python3.11; return; fi
  command -v python3.11 || command -v python3
}

venv_usable() {  # venv_usable DIR PYTHON
  local dir=$1 py=$2 want
  [ -x "$dir/bin/python" ] || return 1
  want=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || return 1
  "$dir/bin/python" -c "import sys, pip; assert '%d.%d' % sys.version_info[:2] == '$want'" >/dev/null 2>&1
}

ensure_venv() {  # ensure_venv DIR PYTHON: a usable venv at DIR, rebuilt when it is not
  local dir=$1 py=$2
  venv_usable "$dir" "$py" && return 0
  if [ -e "$dir" ]; then
    echo "[bootstrap] $dir is not a usable venv (no python, another version, or no pip): rebuilding it" >&2
    rm -rf "$dir"
  else
    echo "[bootstrap] creating $dir with $py" >&2
  fi
  if ! "$py" -m venv "$dir" || ! venv_usable "$dir" "$py"; then
    rm -rf "$dir"
    echo "[bootstrap] $py -m venv failed: install the venv module (Debian/Ubuntu: python3.11-venv," \
         "which scripts/system_deps.sh installs) and run this again" >&2
    return 1
  fi
}
