"""Backups on any target: the backup.* and drill.* commands, retention rules, dump and
fingerprint, the drill report. Each target's own work is in its `backups` capability."""
