"""What ``write_report`` answers (plain pydantic: the MCP layer imports it at start-up, the
report machinery itself only when a report is written)."""

from pydantic import BaseModel


class ReportAnswer(BaseModel):
    path: str
    summary: str
