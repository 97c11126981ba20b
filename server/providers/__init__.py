"""Suggestion providers behind one async protocol (see base.py)."""
