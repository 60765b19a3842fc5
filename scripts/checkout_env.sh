# Source this file (bash) to import dlbasics from this checkout without installing it.
# The packages live at the repository's top level (kernels/, models/, studies/) and are imported
# as dlbasics.kernels, dlbasics.models and dlbasics.studies: this makes a temporary directory
# holding dlbasics/{kernels,models,studies} as links to them and puts it on PYTHONPATH (run the
# tests from the repository root, as usual). Numba's cache still lands beside the sources.
_dlb_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_dlb_shim=$(mktemp -d "${TMPDIR:-/tmp}/dlbasics-checkout.XXXXXX")
mkdir -p "$_dlb_shim/dlbasics"
for _dlb_pkg in kernels models studies; do
  ln -s "$_dlb_root/$_dlb_pkg" "$_dlb_shim/dlbasics/$_dlb_pkg"
done
export PYTHONPATH="$_dlb_shim${PYTHONPATH:+:$PYTHONPATH}"
unset _dlb_pkg
