"""The read API on Lambda: the FastAPI app through Mangum, behind CloudFront."""

from __future__ import annotations

from mangum import Mangum

from api.app import app
from pipeline import services

# Clients at import, once per cold start: Mangum's lifespan would run per invocation.
services.store()
# CloudFront forwards `/api/v1/...` and `/docs` unchanged and the app's routes carry the full path: strip nothing.
handler = Mangum(app, lifespan="off", api_gateway_base_path="/")
