"""A local DataArts Studio over real HTTP, for `backupd demo`, `backupd simulator` and tests."""
