"""JSync's read API (FastAPI): `/api/v1`, served locally by uvicorn and deployed through Mangum."""
