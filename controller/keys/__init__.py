"""API keys: the hashed keys file, and following its changes."""
