"""Prompt templates (Markdown with {{variables}}) and their renderer."""
