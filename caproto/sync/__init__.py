"""The synchronous client: see client.py."""
