"""The read API and browse page over the mirror (FastAPI, served by uvicorn)."""
