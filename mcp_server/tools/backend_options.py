"""The ``backend`` and ``options`` arguments of create_run and create_sweep, from the registry.

Every registered backend (``core.backends.registry``) contributes its name to ``backend``'s
enum and its option fields to one ``options`` object, so a plugin's options are advertised
with their types and bounds as soon as it is installed. One object with every key (each
belongs to one backend, and the description says which) keeps the schema precise and small;
the chosen backend checks its own keys when the run is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

from mcp_server.core.backends import registry


def _options_model() -> type[BaseModel]:
    fields: dict[str, Any] = {}
    owners: list[str] = []
    for name, cls in registry.classes().items():
        model = cls.options_model()
        if model is None:
            continue
        keys = [k for k in model.model_fields if k not in fields]
        for key in keys:
            info = model.model_fields[key]
            fields[key] = (info.annotation, info)
        if keys:
            owners.append(f"{name}: {', '.join(keys)}")
    return create_model(  # type: ignore[call-overload,no-any-return]
        "BackendOptions",
        __config__=ConfigDict(extra="forbid"),
        __doc__="keys of the chosen backend — " + "; ".join(owners),
        **fields,
    )


BackendOptions = _options_model()
BACKEND_CHOICES: tuple[str, ...] = (registry.AUTO, *registry.names())
BACKEND_HELP = "auto: the best fit here (highest affinity)"

if TYPE_CHECKING:
    BackendName = str
else:
    BackendName = Literal[BACKEND_CHOICES]


def options_dict(options: BaseModel | None) -> dict[str, Any] | None:
    """The options as the service takes them (only what the caller set)."""
    return options.model_dump(exclude_unset=True) if options is not None else None
