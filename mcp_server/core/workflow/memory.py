"""Memory: short rules learned while experimenting, shown to the agent while active.

A rule ("bs > 256 OOMs on the 24 GB cards") is worth more than a transcript: active rules
are put into the experiment context every session; inactive ones are kept for the record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlmodel import select

from mcp_server.core.errors import InvalidInput, NotFound
from mcp_server.core.ids import new_id, validate_id
from mcp_server.core.run_views import iso
from mcp_server.core.storage import sqlpage
from mcp_server.core.storage.models import Memory
from mcp_server.core.storage.store import Store, now
from mcp_server.core.workflow.workflow_views import MemoryList, MemoryRow

MAX_TITLE_CHARS = 200
MAX_CONTENT_CHARS = 4000
MAX_SOURCE_CHARS = 200
MAX_TAGS = 16
TAG_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,31}$"
_TAG_RE = re.compile(TAG_PATTERN)


def _text(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or "\x00" in value:
        raise InvalidInput(f"{what} must be 1-{limit} characters of text.")
    return value.strip()


def _tags(tags: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for tag in tags or []:
        norm = tag.strip().lower() if isinstance(tag, str) else tag
        if not isinstance(norm, str) or not _TAG_RE.match(norm):
            raise InvalidInput(
                f"tag {tag!r} is not allowed: 1-32 characters from a-z, 0-9, '_', '.', ':', '-' "
                "(e.g. 'lr', 'oom', 'model:resnet50')."
            )
        if norm not in out:
            out.append(norm)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"{len(out)} tags given; the limit is {MAX_TAGS}.")
    return out


def to_row(m: Memory) -> MemoryRow:
    return MemoryRow(
        id=m.id,
        title=m.title,
        content=m.content,
        tags=m.tags,
        source=m.source,
        active=m.active,
        created_at=iso(m.created_at) or "",
        updated_at=iso(m.updated_at) or "",
    )


# One MemoryRow as JSON, written by SQLite (list is read in plain SQL: core.storage.sqlpage).
ROW_JSON = (
    "json_object('id', id, 'title', title, 'content', content, 'tags', json(tags), 'source', source, "
    "'active', json(CASE WHEN active THEN 'true' ELSE 'false' END), "
    f"'created_at', {sqlpage.ISO.format('created_at')}, 'updated_at', {sqlpage.ISO.format('updated_at')})"
)


class MemoryService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self, memory_id: str) -> Memory:
        validate_id(memory_id, "mem", "memory id")
        with self.store.read() as s:
            memory = s.exec(select(Memory).where(Memory.id == memory_id)).first()
        if memory is None:
            raise NotFound(f"no memory with id {memory_id!r}; use list_memories to see them.")
        return memory

    def add(
        self, *, title: str, content: str, tags: list[str] | None = None, source: str = "agent"
    ) -> MemoryRow:
        t = now()
        memory = Memory(
            id=new_id("mem"),
            title=_text(title, "title", MAX_TITLE_CHARS),
            content=_text(content, "content", MAX_CONTENT_CHARS),
            tags=_tags(tags),
            source=_text(source, "source", MAX_SOURCE_CHARS),
            active=True,
            created_at=t,
            updated_at=t,
        )
        with self.store.write() as s:
            s.add(memory)
        return to_row(memory)

    def list(
        self, *, active_only: bool = False, tag: str | None = None, limit: int = 100, offset: int = 0
    ) -> MemoryList:
        if not 1 <= limit <= 500:
            raise InvalidInput(f"limit={limit} is out of range; give 1 to 500.")
        if offset < 0:
            raise InvalidInput(f"offset={offset} must be ≥ 0.")
        clauses: list[str] = []
        params: list[Any] = []
        if active_only:
            clauses.append("active = 1")
        if tag is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(memories.tags) WHERE value = ?)")
            params.append(_tags([tag])[0])
        with self.store.sql.snapshot() as conn:
            return sqlpage.page(
                conn, MemoryList, "memories", ROW_JSON, "memories", clauses, params, limit=limit,
                offset=offset,
            )  # fmt: skip

    def update(
        self,
        memory_id: str,
        *,
        title: str | None = None,
        content: str | None = None,
        tags: Sequence[str] | None = None,
        active: bool | None = None,
    ) -> MemoryRow:
        self.load(memory_id)
        values: dict[str, object] = {}
        if title is not None:
            values["title"] = _text(title, "title", MAX_TITLE_CHARS)
        if content is not None:
            values["content"] = _text(content, "content", MAX_CONTENT_CHARS)
        if tags is not None:
            values["tags"] = _tags(tags)
        if active is not None:
            values["active"] = bool(active)
        if not values:
            raise InvalidInput("nothing to update: give title, content, tags or active.")
        with self.store.write() as s:
            memory = s.exec(select(Memory).where(Memory.id == memory_id)).one()
            for key, value in {**values, "updated_at": now()}.items():
                setattr(memory, key, value)
            s.add(memory)
        return to_row(self.load(memory_id))
