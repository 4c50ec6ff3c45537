"""The web console: static files served at ``/ui/`` (docs/console.md)."""
