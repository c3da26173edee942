"""DataArts Studio API: authentication, client and a local simulator."""
