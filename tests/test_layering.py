"""The core services import nothing from the MCP SDK, and nothing heavy at import.

DESIGN: core services are driven from the CLI, the sidecar and tests exactly as the tools
drive them, so they must not need the MCP SDK (``mcp``, ``mcp_types``); and litellm (about
1.8 s to import) loads only when the LLM judge is used, matplotlib only when a report is
written, apprise only in the notification sender and Optuna (about 0.7 s) only for an
adaptive sweep or a pruner. A fresh interpreter imports every
module of these packages and reports what got loaded.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

from tests.helpers import PYTHON

LAYERS = ("mcp_server.core", "resources", "prompts", "sidecar")
FORBIDDEN = ("mcp", "mcp_types", "litellm", "matplotlib", "apprise", "optuna")

_IMPORT_ALL = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    imported = []
    for name in sys.argv[1:]:
        package = importlib.import_module(name)
        imported.append(name)
        for module in pkgutil.walk_packages(package.__path__, name + "."):
            importlib.import_module(module.name)  # __main__ modules guard their entry point
            imported.append(module.name)
    loaded = sorted({m.split(".")[0] for m in sys.modules})
    print(json.dumps({"imported": imported, "loaded": loaded}))
    """
)


def test_core_resources_prompts_and_sidecar_import_no_mcp_sdk_and_no_litellm() -> None:
    proc = subprocess.run(
        [PYTHON, "-c", _IMPORT_ALL, *LAYERS], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    imported = set(report["imported"])
    # The walk really covered the layers (a broken walk must not pass vacuously).
    walked = {"mcp_server.core.monitoring.events", "mcp_server.core.backends.local", "resources.context"}
    assert walked <= imported
    assert {"prompts.render", "sidecar.monitor", "sidecar.judge", "sidecar.__main__"} <= imported
    assert [m for m in report["loaded"] if m in FORBIDDEN] == []


def test_the_server_starts_without_the_store_layer() -> None:
    # A stdio server answers initialize about as fast as an empty MCP server (DESIGN invariant
    # 6): sqlmodel/SQLAlchemy load with the core services on first use, not with the tools.
    probe = (
        "import json, sys, mcp_server.server; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    proc = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert "mcp" in loaded and not loaded & {"sqlmodel", "sqlalchemy", "litellm", "optuna"}
