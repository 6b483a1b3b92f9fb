"""Build the API reference of `flames` (its public names, from their docstrings) with pdoc.

Usage: python .ci/api_docs.py OUTPUT_DIR. Any warning pdoc raises (an annotation it cannot
resolve, a name in __all__ that does not resolve, ...) fails the build.
"""

import sys
import warnings
from pathlib import Path

import pdoc

import flames

warnings.filterwarnings("error", module=r"pdoc(\.|$)")
for name in flames.__all__:  # the public names load lazily: resolve them for pdoc to see
    getattr(flames, name)
# Only the top-level module: everything else is implementation.
pdoc.pdoc("flames", "!flames\\..*", output_directory=Path(sys.argv[1]))
print(f"API reference written to {sys.argv[1]}/flames.html")
