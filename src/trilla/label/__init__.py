"""Labelling projects: items, every annotator's answers (SQLite or PostgreSQL), agreement, export."""

from trilla.label.project import Project

__all__ = ["Project"]
