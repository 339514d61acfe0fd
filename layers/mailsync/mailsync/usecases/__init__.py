"""Use cases: one function per API operation or background job, dependencies passed in."""
