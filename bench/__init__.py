"""``make bench``: the sync engine measured side by side with the protocol limit and the
best IMAP sync tools (issue 5). See docs/performance.md for how to read the table."""
