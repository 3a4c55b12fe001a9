"""Authentication, tokens, brute-force protection and rate limiting."""
