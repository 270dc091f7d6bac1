"""The serving chain end to end, one platform for the package (see its conftest.py)."""
