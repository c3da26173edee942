"""Restoring from the repository: plan (rebuild a zip), compare, import into DataArts."""
