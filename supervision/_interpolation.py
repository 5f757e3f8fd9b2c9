"""The ``${...}`` syntax of SPEC §3, in one place: the loader (``_resolve``) reads every
string by it, and the control client (``_client``) a ``state_dir`` as the loader would.

Only ``re`` is imported, so a control command can use it and stay light.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["INTERPOLATION", "SECRET_VARIABLE", "VARIABLE", "supervisord_said"]

# ``$${`` (a literal ``${``), or ``${inner}``; group 2 is the ``}``, None when it is missing.
INTERPOLATION: Final = re.compile(r"\$\$\{|\$\{([^}]*)(\})?")
# The inside of ``${NAME}`` or ``${NAME:-fallback}``: the name, then the fallback (or None).
VARIABLE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
# The inside of ``${secret:NAME}``.
SECRET_VARIABLE: Final = re.compile(r"secret:([A-Za-z_][A-Za-z0-9_]*)")
# supervisord's own expansions, which a manifest takes as text: ``%(ENV_X)s`` and the names
# of its program sections (``%(process_num)02d``). Only those: ``%(asctime)s`` is a Python
# logging format a command may well be given.
_SUPERVISORD: Final = re.compile(
    r"%\((ENV_[A-Za-z_][A-Za-z0-9_]*|program_name|process_num|group_name|host_node_name"
    r"|numprocs|numprocs_start|here)\)[-#0 +]*\d*[sd]"
)


def supervisord_said(text: str) -> str | None:
    """The warning for ``text`` holding a supervisord expansion (its first), else None."""
    found = _SUPERVISORD.search(text) if "%(" in text else None
    if found is None:
        return None
    written, name = found.group(0), found.group(1)
    said = f"looks like supervisord's {written}, taken as text here; "
    if name.startswith("ENV_"):
        name = name.removeprefix("ENV_")
        return f"{said}jobvisor writes ${{{name}}} (or {{secret: {{env: {name}}}}} for a secret)"
    return f"{said}jobvisor has no such expansion: write the name itself"
