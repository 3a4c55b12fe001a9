"""Facts about this machine: free ports below the ephemeral range, process liveness."""
