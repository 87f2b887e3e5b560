"""The HTTP + WebSocket API (FastAPI): `create_app(service)`."""
