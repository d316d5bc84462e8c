"""The compress stage."""
