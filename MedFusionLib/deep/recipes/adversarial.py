"""Placeholder: recipes of this family are being written."""
