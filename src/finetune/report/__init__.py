"""What the report stage draws (``plots``) and writes (``document``)."""
