"""mailsync: multi-tenant email sync backend for CRMs (shared Lambda layer package)."""

__version__ = "0.1.0"
