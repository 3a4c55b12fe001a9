"""Deploy step 4: release notes since the release in production."""
