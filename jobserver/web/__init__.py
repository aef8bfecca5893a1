"""The HTTP and WebSocket layer."""
