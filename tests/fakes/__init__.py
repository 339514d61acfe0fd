"""In-process fakes of third-party services, written from their published references."""
