"""The local target's snapshots: taking, verifying, listing, pruning, restoring, drilling."""
