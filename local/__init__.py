"""The local stack: moto in server mode, a bare git remote, uvicorn and pollers feeding the real handlers."""
