"""Placeholder: networks of this family are being written."""
