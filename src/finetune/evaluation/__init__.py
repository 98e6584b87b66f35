"""Test-set scores (``scoring``) and the typed metrics ``evaluate`` writes (``metrics``)."""
