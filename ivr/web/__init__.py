"""HTTP: the API (``api.py``), its authentication (``auth.py``) and the server (``app.py``)."""
