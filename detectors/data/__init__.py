"""Data files the detection engine reads at import time (no I/O at run time)."""
