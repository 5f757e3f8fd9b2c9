"""The ``${...}`` syntax of SPEC §3, in one place: the loader (``_resolve``) reads every
string by it, and the control client (``_client``) a ``state_dir`` as the loader would.

Only ``re`` is imported, so a control command can use it and stay light.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["INTERPOLATION", "SECRET_VARIABLE", "VARIABLE"]

# ``$${`` (a literal ``${``), or ``${inner}``; group 2 is the ``}``, None when it is missing.
INTERPOLATION: Final = re.compile(r"\$\$\{|\$\{([^}]*)(\})?")
# The inside of ``${NAME}`` or ``${NAME:-fallback}``: the name, then the fallback (or None).
VARIABLE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
# The inside of ``${secret:NAME}``.
SECRET_VARIABLE: Final = re.compile(r"secret:([A-Za-z_][A-Za-z0-9_]*)")
