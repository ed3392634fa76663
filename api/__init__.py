"""FastAPI admin API."""
