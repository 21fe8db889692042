"""The REST service around the engine (`app.engine.api` is its only entry point).

`create_app(settings)` in `app.service.app` builds the FastAPI app; `serve()` in
`app.service.server` runs it under uvicorn. Nothing starts at import time.
"""
