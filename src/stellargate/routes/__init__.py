"""HTTP endpoints: thin handlers that hand model calls to the stage chain."""
